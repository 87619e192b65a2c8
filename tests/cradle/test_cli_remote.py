"""Every CLI command over ``--url``: through the gateway's API, or one ``error:`` line for the
commands that work on the platform's own machine only; never a traceback, never a silent local read."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

import mnemos.cli as cli

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there
LOCAL_ONLY = ("sync", "restore", "wraith list", "wraith run", "wraith snapshots")
# What may exit 0 without any platform: local files only (kuberay: Kubernetes, not the gateway).
OFFLINE = {"schema", "logout", "model init-tiny"}
# They start or stop this machine's cluster: `--url` does not apply to them (nor to a unit test).
CLUSTER = {"up", "down", "demo"}
POLICY = "deployments/local/policy.yaml"


def _commands() -> list[tuple[str, Any]]:
    """``(name, click command)`` for every command of the app, groups walked."""
    found = []

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            found.append((" ".join(path), command))

    walk(typer.main.get_command(cli.app), [])
    return found


def _argv(name: str, command: Any, tmp_path: Path) -> list[str]:
    """The command with a plausible value for each required parameter."""
    values = {
        "kind": "policy", "file": POLICY, "files": POLICY, "directory": str(tmp_path / "model"), "snapshot": "latest",
        "repo": str(tmp_path / "ops"), "path": "envs/dev", "role": "viewer", "function": "math:sqrt",
        "credential_id": "tok-000000000000", "space": "s", "query": "q",
    }  # fmt: skip
    argv = name.split()
    for param in command.params:
        if param.required:
            value = values.get(param.name, "x")
            argv += [value] if param.param_type_name == "argument" else [param.opts[0], value]
    return argv


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    try:
        cli.main(argv)
        code: Any = 0
    except SystemExit as exited:
        code = exited.code
    except Exception as exc:  # noqa: BLE001 - what a user would see as a traceback
        out, err = capsys.readouterr()
        pytest.fail(f"mnemos {' '.join(argv)} raised {type(exc).__name__}: {exc}\n{out}\n{err}")
    out, err = capsys.readouterr()
    return int(code or 0), out, err


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", str(tmp_path / "engram"))
    monkeypatch.setenv("MNEMOS_URL", CLOSED)  # the --url callback sets it too: restored afterwards
    for name in ("MNEMOS_CONFIG", "MNEMOS_API_KEY", "MNEMOS_TOKEN", "MNEMOS_RAY_ADDRESS", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return tmp_path


def test_every_command_over_url_is_an_answer_or_one_error_line(home: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(Path(cli.__file__).resolve().parents[2])  # deployments/ is relative to the repository
    commands = [(n, c) for n, c in _commands() if n not in CLUSTER]
    assert {"sync", "diff", "restore", "wraith snapshots", "token list", "get"} <= {n for n, _ in commands}
    for name, command in commands:
        argv = ["--url", CLOSED, *_argv(name, command, home)]
        code, out, err = _run(capsys, argv)
        text = out + err
        assert "Traceback" not in text, f"mnemos {' '.join(argv)}\n{text}"
        if name in OFFLINE or name.startswith("kuberay "):
            continue
        # Nothing listens at --url: every other command either failed to reach it or refused.
        assert code != 0, f"mnemos {' '.join(argv)} exited 0 without the gateway:\n{text}"
        assert err.strip().splitlines()[-1].startswith("error: "), f"mnemos {' '.join(argv)}\n{text}"
        if name in LOCAL_ONLY:
            assert f"`mnemos {name.split()[0]}" in err and "not over --url" in err, text
        elif name.startswith("token "):  # /v1/tokens over the gateway (tests/frontdoor/test_cli_remote.py)
            assert "gateway at http://127.0.0.1:9 is not reachable" in err, text


def test_local_only_commands_refuse_before_reading_anything(home: Path, capsys) -> None:
    (home / "home" / "backups").mkdir(parents=True)
    for argv in (["wraith", "snapshots"], ["restore", "latest", "--to", str(home / "restored")],
                 ["wraith", "run", "backup"], ["sync", "--repo", str(home), "--path", "x"]):  # fmt: skip
        code, out, err = _run(capsys, argv)  # MNEMOS_URL, as after `mnemos login`
        assert code == 2, out + err
        assert err.strip() == (
            f"error: `mnemos {' '.join(argv[:2]) if argv[0] == 'wraith' else argv[0]}` works on the platform's own "
            "machine, not over --url: run it there (or unset MNEMOS_URL / mnemos logout)"
        )
    assert not (home / "restored").exists()


def test_diff_reads_the_live_resources_through_the_gateway(tmp_path: Path) -> None:
    """``diff`` with a RemoteClient reads each resource with GET /apis/… from the real gateway app
    (in-process, auth off; a resource stored in its ENGRAM's registry), never ENGRAM itself."""
    import yaml
    from starlette.testclient import TestClient

    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.genome import Registry, parse_resource
    from mnemos.relay._edge import EdgeSeam
    from mnemos.relay._gateway import Gateway
    from mnemos.relay.ingress import create_app
    from mnemos.remote import RemoteClient
    from mnemos.wraith.gitops import diff, load_resources

    settings = load_settings(engram={"uri": str(tmp_path / "engram")}, relay={"auth": False})
    engram = Engram(str(tmp_path / "engram"))
    root = Path(cli.__file__).resolve().parents[2]
    declared = yaml.safe_load(root.joinpath(POLICY).read_text())
    live = {**declared, "spec": {**declared["spec"], "rules": {"maxReplicas": 1}}}
    Registry(engram).apply(parse_resource(live))
    asked: list[str] = []

    def note(request: Any) -> None:
        asked.append(f"{request.method} {request.url.path}")

    client = RemoteClient("http://testserver", "mk_test")
    client._http = TestClient(create_app(Gateway(settings, engram, None), EdgeSeam(settings, engram)),
                              base_url="http://testserver")
    client._http.event_hooks["request"].append(note)
    (tmp_path / "new.yaml").write_text(yaml.safe_dump({**declared, "metadata": {"name": "other"}}))
    entries = diff(client, load_resources([root / POLICY, tmp_path / "new.yaml"]))
    assert [(e.name, e.action) for e in entries] == [("local-defaults", "configure"), ("other", "create")]
    assert "maxReplicas: 1" in entries[0].diff
    assert asked and all(a.startswith("GET /apis/") for a in asked), asked


def test_a_url_ending_in_a_gateway_path_is_refused_naming_the_root(home: Path, capsys) -> None:
    """``…/v1`` is what OpenAI clients take as base_url; given to the CLI or ``mnemos.connect`` every
    call was a bare ``error: Not Found``. A gateway under a path prefix stays a root."""
    import mnemos
    from mnemos.cli._session import check_url
    from mnemos.errors import ValidationError

    why = {"v1": "/v1 is the OpenAI clients' base_url, not the platform's",
           "ui": "/ui is the console's page, not the platform's"}
    for url in ("http://127.0.0.1:18091/v1", "http://127.0.0.1:18091/v1/", "http://127.0.0.1:18091/ui"):
        code, out, err = _run(capsys, ["--url", url, "get", "model"])
        assert code == 2 and "Traceback" not in err, err
        tail = url.rstrip("/").rsplit("/", 1)[-1]
        assert err.strip().splitlines()[-1] == (
            f"error: --url: {url!r} ends in /{tail}: give the gateway's root, 'http://127.0.0.1:18091' "
            f"({why[tail]})"), err
        with pytest.raises(ValidationError, match="give the gateway's root, 'http://127.0.0.1:18091'"):
            mnemos.connect(url, api_key="mk_0123456789abcdef_x")
    assert check_url("https://example.com/mnemos", "--url") == "https://example.com/mnemos"


def test_a_note_belongs_to_the_command_that_made_it(tmp_path: Path, capsys, monkeypatch) -> None:
    """In one process (a notebook, a test session) the note of a first write to an unused local
    store is printed by that command only, never again by the next."""
    for name in ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN", "MNEMOS_RAY_ADDRESS", "MNEMOS_ENGRAM__URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    policy = str(Path(cli.__file__).resolve().parents[2] / POLICY)
    code, out, err = _run(capsys, ["apply", "-f", policy])
    assert code == 0 and "created" in out and err.startswith("note: no gateway is configured"), err
    code, out, err = _run(capsys, ["get", "policy"])
    assert code == 0 and "local-defaults" in out and "note:" not in err, err
