"""The `mnemos` CLI as a user meets it with no platform up, or pointed at a server that is no MNEMOS
gateway: each message names what the user typed (the option, the file, the URL), one line, no
traceback. Real processes, as ``test_cli_bad_input`` runs them (Ray refused)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests_support import NO_RAY

POLICY = "apiVersion: genome.mnemos.dev/v1\nkind: Policy\nmetadata: {name: api-cli}\nspec: {}\n"
MODEL = ("apiVersion: genome.mnemos.dev/v1\nkind: Model\nmetadata: {name: echo}\nspec:\n  family: test\n"
         "  version: '1'\n  artifact: {uri: 'file:///dev/null'}\n  runtime: {engine: echo}\n")  # fmt: skip


def mnemos(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``mnemos ARGS`` in ``home`` (its MNEMOS_HOME, HOME and working folder), Ray refused."""
    unset = ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN", "MNEMOS_RAY_ADDRESS", "RAY_ADDRESS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(MNEMOS_HOME=str(home), HOME=str(home))
    return subprocess.run([sys.executable, "-c", NO_RAY, *args], input=stdin, cwd=home, env=env,
                          capture_output=True, text=True, errors="replace", timeout=60)  # fmt: skip


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "model.yaml").write_text(MODEL)
    return tmp_path


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one ``error: …`` line of a command that failed as a user's mistake."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(("flags", "shown"), [
    (("--rpm", "0"), "--rpm: "), (("--tpm", "0"), "--tpm: "), (("--budget", "-1"), "--budget: "),
    (("--budget", "nan"), "--budget: "), (("--model", ""), "--model: "),
])  # fmt: skip
def test_token_create_names_the_option_not_the_field_it_fills(home: Path, flags: tuple[str, ...], shown: str) -> None:
    """``mnemos token create --rpm 0`` said ``limits.rpm: …``, the field of POST /v1/tokens, which the
    user never typed; it names ``--rpm``."""
    line = _one_line(mnemos(home, "token", "create", "--name", "x", "--role", "developer", *flags))
    assert line.startswith(f"error: {shown}") and "limits." not in line, line


@pytest.mark.parametrize("k", ["0", "1001"])
def test_spaces_search_names_the_option_for_k(home: Path, k: str) -> None:
    """``mnemos spaces search S Q -k 0`` said ``k must be at least 1`` (and over a gateway ``k: …``
    for 1001, past what the API answers): it names ``-k/--top`` and its bounds, before asking."""
    line = _one_line(mnemos(home, "spaces", "search", "s", "q", "-k", k))
    assert line == f"error: -k/--top: {k} is not between 1 and 1000", line


@pytest.mark.parametrize("command", ["validate", "apply"])
@pytest.mark.parametrize("path", ["/dev/null", "empty.yaml"])
def test_an_empty_file_says_it_has_no_documents(home: Path, command: str, path: str) -> None:
    """``mnemos validate -f /dev/null`` said "/dev/null: no such file or directory" (a device is no
    regular file); it says the file holds no documents, and what was not done."""
    line = _one_line(mnemos(home, command, "-f", path))
    assert line == f"error: no documents in {path} (it is empty, or holds only comments): nothing to {command}", line


@pytest.mark.parametrize("command", ["validate", "apply", "diff"])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(home: Path, command: str) -> None:
    """``mnemos validate -f ""`` validated every resource under the working folder (``model.yaml`` here)
    and ``apply -f ""`` would have applied them: Typer made ``""`` the path ``.``."""
    line = _one_line(mnemos(home, command, "-f", ""))
    assert line.startswith("error: -f/--file: an empty path"), line


def test_a_pipe_is_read_as_a_file(home: Path) -> None:
    """``mnemos validate -f <(kustomize build)`` (a pipe: /dev/fd/63) was "no such file or directory"."""
    proc = mnemos(home, "validate", "-f", "/dev/stdin", stdin=POLICY)  # standard input is a pipe here
    assert proc.returncode == 0 and "policy/api-cli valid" in proc.stdout, proc.stdout + proc.stderr


class _NotAGateway(http.server.BaseHTTPRequestHandler):
    """A web server that is no MNEMOS gateway: ``/page`` answers 200 HTML to every path,
    ``/api`` JSON errors of its own shape (``{"detail": …}``), ``/mnemos`` MNEMOS's error body;
    anything else 404 HTML."""

    def _answer(self) -> None:
        if self.path.startswith("/page"):
            status, kind, body = 200, "text/html", b"<html>a web page</html>"
        elif self.path.startswith("/api"):
            status, kind, body = 404, "application/json", b'{"detail": "Not Found"}'
        elif self.path.startswith("/mnemos"):
            error = {"message": "invalid API key", "type": "authentication_error", "param": None, "code": "x"}
            status, kind, body = 401, "application/json", json.dumps({"error": error}).encode()
        else:
            status, kind, body = 404, "text/html", b"<html>404 Not Found</html>"
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotAGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize("root", ["", "/page", "/api"])
@pytest.mark.parametrize("command", [("get", "model"), ("status",), ("token", "list"), ("apply", "-f", "model.yaml")])
def test_a_url_that_is_no_gateway_says_so(home: Path, web: str, root: str, command: tuple[str, ...]) -> None:
    """``--url`` naming another web server read as "HTTP 404 from /v1/status", and one answering
    a page with 200 as a traceback (the page read as JSON). It says the URL does not answer as a
    MNEMOS gateway, and where the URL comes from."""
    url = web + root
    line = _one_line(mnemos(home, "--url", url, *command))
    assert f"error: {url} does not answer as a MNEMOS gateway (HTTP " in line, line
    assert "check the URL (--url, MNEMOS_URL or `mnemos login URL`)" in line, line


def test_login_and_usage_say_so_too_and_a_gateways_own_errors_pass(home: Path, web: str) -> None:
    line = _one_line(mnemos(home, "login", web, "--api-key", "mk_0123456789abcdef_x"))
    assert f"{web} does not answer as a MNEMOS gateway (HTTP 404 for GET /v1/whoami, a web page)" in line, line
    line = _one_line(mnemos(home, "usage", "--url", web + "/api"))
    assert "does not answer as a MNEMOS gateway (HTTP 404 for GET /api/v1/usage)" in line, line
    line = _one_line(mnemos(home, "--url", web + "/mnemos", "get", "model"))
    assert line.startswith("error: invalid API key"), line  # the gateway's own error, as it said it


def test_get_model_says_the_status_is_unknown_when_no_platform_is_up(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``mnemos down`` a Model read ``Ready`` (or ``Deploying``), the last status the stopped
    controller recorded; with no platform up it is ``Unknown`` (``PlatformDown``), with a note."""
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay.model_status import ModelStatusWriter

    applied = mnemos(home, "apply", "-f", "model.yaml")
    assert applied.returncode == 0, applied.stderr
    monkeypatch.setenv("MNEMOS_HOME", str(home))
    route = {"status": "ready", "generation": 1, "ready_replicas": 1, "desired_replicas": 1, "engine": "echo"}
    ModelStatusWriter(Engram.from_settings(load_settings())).write("echo", route)  # as a stopped controller left it
    listed = mnemos(home, "get", "model")
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.strip().splitlines()[-1].split()
    assert row[0] == "echo" and row[3:] == ["Unknown", "0/1", "PlatformDown"], listed.stdout
    assert "note: no platform is up" in listed.stderr, listed.stderr
    doc = json.loads(mnemos(home, "get", "model", "echo", "-o", "json").stdout)
    assert doc["status"]["phase"] == "Unknown" and doc["status"]["last_recorded"]["phase"] == "Ready", doc["status"]
    described = mnemos(home, "describe", "model", "echo")
    assert "Phase:       Unknown   Reason: PlatformDown" in described.stdout, described.stdout
    assert "the last status recorded was Ready" in described.stdout, described.stdout
