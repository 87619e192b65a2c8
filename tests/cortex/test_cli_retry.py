"""``mnemos jobs retry JOB_ID``: a failed or cancelled job again, embedded (the local admin) and over a
gateway (``MNEMOS_URL`` and an API key, through SOUL's real edge): it prints the new job's id; an
unknown job, one that cannot be retried and a viewer's key are one line each and a non-zero exit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from tests_support import serving

from mnemos.cli import main

T = "mnemos.cortex.testing"
_CREDENTIALS = ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN")


def _mnemos(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``mnemos ARGS`` in-process, as the shell runs it: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in err, err
    return line


@pytest.fixture()
def embedded(client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in _CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    return client


def test_retry_embedded_prints_the_new_job(embedded: Any, capsys: pytest.CaptureFixture[str]) -> None:
    failed = embedded.jobs.submit(f"{T}:fail", "once", max_attempts=1)
    assert failed.wait(timeout=120)["status"] == "failed"
    code, out, err = _mnemos(capsys, "jobs", "retry", failed.id)
    assert code == 0, err
    words = out.split()
    assert words[0] == "job" and words[2:] == ["queued", "(a", "retry", "of", f"{failed.id})"], out
    again = embedded.jobs.get(words[1]).wait(timeout=120)
    assert again["status"] == "failed" and again["id"] != failed.id and again["function"] == f"{T}:fail"

    code, out, err = _mnemos(capsys, "jobs", "retry", failed.id, "-o", "json")
    assert code == 0, err
    assert json.loads(out)["function"] == f"{T}:fail"

    code, out, err = _mnemos(capsys, "jobs", "retry", "no-such-job")
    assert code == 3 and not out and "job 'no-such-job' not found" in _one_error_line(err)
    done = embedded.jobs.submit(f"{T}:add", 1, 2)
    assert done.result(timeout=120) == 3
    code, out, err = _mnemos(capsys, "jobs", "retry", done.id)
    assert code != 0 and not out
    assert "only failed or cancelled jobs can be retried" in _one_error_line(err)


@pytest.fixture()
def gateway(client: Any, cortex: Any, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The ``/v1/jobs`` routes behind SOUL's edge as RELAY builds them (authentication on, an API key
    per role), on a loopback port, over this package's CORTEX."""
    from mnemos.config import load_settings
    from mnemos.cortex.http import build_router, cortex_handle
    from mnemos.engram import Engram
    from mnemos.relay._errors import install_error_handlers
    from mnemos.soul.edge import EdgeGuard
    from mnemos.soul.ratelimit import LocalRateLimiter

    settings = load_settings(engram={"uri": str(tmp_path / "engram")}, relay={"auth": True})
    edge = EdgeGuard(settings, Engram.from_settings(settings), limiter=LocalRateLimiter())
    keys = {role: edge.store.create_api_key(f"{role}-user", role).secret for role in ("operator", "viewer")}

    async def admit(request: Request) -> Any:  # as RELAY's ingress admits the jobs routes
        return await edge.admit(request, "read-artifacts" if request.method in ("GET", "HEAD") else "submit")

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(auth=admit, settings=settings))
    app.dependency_overrides[cortex_handle] = lambda: cortex
    with serving(app) as url:
        yield url, keys


def test_retry_over_a_gateway_as_the_owner_and_as_a_viewer(
    gateway: tuple[str, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    url, keys = gateway
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MNEMOS_TOKEN", raising=False)
    monkeypatch.setenv("MNEMOS_URL", url)
    monkeypatch.setenv("MNEMOS_API_KEY", keys["operator"])
    gate = tmp_path / "gate"
    code, out, err = _mnemos(capsys, "jobs", "submit", f"{T}:wait_for_file", str(gate), "--queue", "serial")
    assert code == 0, err
    held = out.split()[1]
    code, out, err = _mnemos(capsys, "jobs", "retry", held)  # still queued or running: 409
    assert code != 0 and not out and "only failed or cancelled jobs can be retried" in _one_error_line(err)
    assert _mnemos(capsys, "jobs", "cancel", held)[0] == 0
    gate.touch()

    monkeypatch.setenv("MNEMOS_API_KEY", keys["viewer"])
    code, out, err = _mnemos(capsys, "jobs", "retry", held)
    assert code == 7 and not out and "viewer" in _one_error_line(err), err

    monkeypatch.setenv("MNEMOS_API_KEY", keys["operator"])
    code, out, err = _mnemos(capsys, "jobs", "retry", held)
    assert code == 0, err
    new = out.split()[1]
    assert out.strip() == f"job {new} queued (a retry of {held})" and new != held
    code, out, err = _mnemos(capsys, "jobs", "get", new, "-o", "json")
    assert code == 0 and json.loads(out)["principal"] == "operator-user", err
    code, out, err = _mnemos(capsys, "jobs", "retry", "no-such-job")
    assert code == 3 and not out and "job 'no-such-job' not found" in _one_error_line(err)
