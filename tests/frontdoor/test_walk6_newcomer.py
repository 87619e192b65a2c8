"""A newcomer's first commands, as they are typed. Gateway URLs with a query, with a path the
gateway does not serve under, or `--url` after the command: each is one line naming the fix
(exit 2), not the gateway's bare "Not Found" (exit 3) for every command, nor click's "No such
option". `mnemos status` starts with its first row; `mnemos run --detach` with no platform up
is refused rather than left `running` in a cluster that stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests_support import REPO, free_port


def _mnemos(home: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": str(home), "MNEMOS_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "mnemos", *args], env={**base, **env}, cwd=home, input=stdin,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr and not proc.stdout, proc
    (line,) = proc.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize("tail", ["?x=1", "/?", "/?token=abc#top"])
def test_a_gateway_url_with_a_query_is_refused_before_any_request(tmp_path: Path, tail: str) -> None:
    """`mnemos login 'http://host:8080?x=1'` was "error: Not Found" (exit 3), as was every command
    with it in --url or MNEMOS_URL: each request's path went into the query."""
    root = f"http://127.0.0.1:{free_port()}"  # nothing listens: the URL is refused before any request
    key = "mk_0123456789abcdef_not-a-real-secret-at-all"
    for proc in (_mnemos(tmp_path, "login", root + tail, "--api-key", "-", stdin=key + "\n"),
                 _mnemos(tmp_path, "--url", root + tail, "get", "model", MNEMOS_API_KEY=key),
                 _mnemos(tmp_path, "get", "model", MNEMOS_URL=root + tail, MNEMOS_API_KEY=key)):  # fmt: skip
        assert proc.returncode == 2, proc
        line = _one_line(proc)
        assert f"{root + tail!r} has a query ('?…')" in line and line.endswith(f"use {root}"), line
        assert "not-a-real-secret" not in line
    assert not (tmp_path / "credentials").exists() and not (tmp_path / "endpoint.json").exists()


def test_a_gateway_url_with_a_path_it_does_not_serve_under_names_its_root(frontdoor: Any, tmp_path: Path) -> None:
    """`mnemos login http://host:8080/mnemos` (or --url) heard the gateway's own 404, "error: Not
    Found" (exit 3), for every command: its routes are at its root."""
    key = frontdoor.keys["developer"]
    login = _mnemos(tmp_path, "login", f"{frontdoor.url}/mnemos", "--api-key", "-", stdin=key + "\n")
    assert login.returncode == 2, login
    line = _one_line(login)
    assert line.startswith(f"error: {frontdoor.url}/mnemos: the gateway has no route under /mnemos "), line
    assert "GET /mnemos/v1/whoami" in line and f"use {frontdoor.url} " in line and key not in line, line
    assert not (tmp_path / "credentials").exists() and not (tmp_path / "endpoint.json").exists()
    listing = _mnemos(tmp_path, "--url", f"{frontdoor.url}/mnemos/", "get", "model", MNEMOS_API_KEY=key)
    assert listing.returncode == 2 and f"use {frontdoor.url} " in _one_line(listing), listing
    # a 404 of a route the gateway has still names what it did not find
    missing = _mnemos(tmp_path, "--url", frontdoor.url, "get", "model", "no-such-model", MNEMOS_API_KEY=key)
    assert missing.returncode == 3 and _one_line(missing) == "error: model/no-such-model not found", missing


@pytest.mark.parametrize("args", [["get", "model"], ["token", "create", "--name", "x", "--role", "viewer"]])
def test_url_after_the_command_says_where_it_goes(tmp_path: Path, args: list[str]) -> None:
    """`mnemos get model --url URL` was "No such option: --url (see 'mnemos get --help')", and that
    help does not list it: it is the program's option."""
    proc = _mnemos(tmp_path, *args, "--url", "http://127.0.0.1:8080")
    assert proc.returncode == 2, proc
    command = " ".join(args[:2]) if args[0] == "token" else args[0]
    program = "python -m mnemos"  # how this test runs it (`mnemos` from the console script)
    assert _one_line(proc) == (f"error: No such option of '{program} {command}': --url is mnemos's own, given "
                               f"before the command: {program} --url URL {command} …"), proc.stderr  # fmt: skip


def test_status_starts_with_its_first_row(tmp_path: Path) -> None:
    """`mnemos status` (name/value rows) began with a line of blanks: the header of two unnamed columns."""
    proc = _mnemos(tmp_path, "status")
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["engram", str(tmp_path / "engram")], proc.stdout
    assert [line.split()[:2] for line in lines[1:2]] == [["platform", "down"]], proc.stdout


def test_run_detach_with_no_platform_up_is_refused_before_a_cluster_starts(tmp_path: Path) -> None:
    """`mnemos run FILE --detach` with no platform up started an embedded cluster, said "run … started"
    and stopped the cluster as it returned: the run stayed `running` with nothing to run it."""
    pipeline = tmp_path / "greet.yaml"
    pipeline.write_text(
        "apiVersion: synkron.mnemos.dev/v1\nkind: Pipeline\nmetadata: {name: greet}\nspec:\n"
        "  steps:\n    - {name: say, script: 'echo hi > \"$MNEMOS_OUTPUT_OUT\"', outputs: [{name: out}]}\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    proc = _mnemos(home, "run", str(pipeline), "--detach")
    assert proc.returncode == 2, proc
    line = _one_line(proc)
    assert line.startswith("error: --detach: no platform is up to go on with the run once this command returns"), line
    assert "`mnemos up`" in line and "without --detach" in line, line
    assert not (home / "engram" / "runs").exists() and not (home / "cluster.json").exists()
