"""A newcomer's first hour with `mnemos up` (docs/guides/quickstart.md, ray-tools.md): `mnemos up`
says where the gateway is; a second `mnemos up` asking for another relay port is refused instead of
printing "relay: up" while the gateway stays where it was; Ctrl-C while the Ray head starts leaves no
Ray head behind that `mnemos down` would not know.

Each command runs as a new process with a private HOME, Ray temp dir and MNEMOS_HOME, so other
clusters on this machine are neither seen nor disturbed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests_support import REPO, free_port, until

BIN = Path(sys.executable).parent


def _run(env: dict[str, str], *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "python"), "-m", "mnemos", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def shell() -> Iterator[dict[str, str]]:
    base = Path(tempfile.mkdtemp(prefix="mnemos-walk-"))
    (base / "home" / ".ray").mkdir(parents=True)
    raytmp = tempfile.mkdtemp(prefix="rw", dir="/tmp")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MNEMOS_")) and k != "TMPDIR"}
    env |= {
        "RAY_USAGE_STATS_ENABLED": "0",
        "HOME": str(base / "home"),
        "RAY_TMPDIR": raytmp,
        "MNEMOS_HOME": str(base / "mnemos"),
        "MNEMOS_RAY__DASHBOARD_PORT": str(free_port()),
        "MNEMOS_RELAY__PORT": str(free_port()),
    }
    yield env
    _run(env, "down", timeout=120)  # no-op when already down
    shutil.rmtree(raytmp, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)


def _heads_logging_to(log: Path) -> list[int]:
    """The `ray start --head` processes whose output goes to ``log`` (a home's ray-head.log)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "--head" in cmd and "start" in cmd:
            try:
                if os.path.realpath(f"/proc/{proc.pid}/fd/1") == os.path.realpath(log):
                    found.append(proc.pid)
            except OSError:
                continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_up_names_the_gateway_and_a_second_up_on_another_port_is_refused(shell: dict[str, str],
                                                                        s3_server: dict[str, object]) -> None:
    port = shell["MNEMOS_RELAY__PORT"]
    up = _run(shell, "up")
    assert up.returncode == 0, up.stderr[-3000:]
    gateway = f"http://127.0.0.1:{port}"
    assert f"relay: gateway {gateway} (OpenAI clients: base_url {gateway}/v1)" in up.stdout, up.stdout
    # The admin key's hint reads it from stdin: a key typed after --api-key stays in shell history and `ps`.
    assert f"use it: mnemos login {gateway} --api-key -" in up.stdout and "--api-key <key>" not in up.stdout
    # Serve's INFO narration ("Started Serve…", "…New http_options… will not be applied") stays off the terminal.
    assert " serve " not in up.stderr and "http_options" not in up.stderr, up.stderr[-3000:]

    other = str(free_port())
    again = _run(shell | {"MNEMOS_RELAY__PORT": other}, "up")
    # It once printed "relay: up" and exited 0 while the gateway stayed on the first port.
    assert again.returncode == 4, (again.returncode, again.stdout[-2000:], again.stderr[-2000:])
    errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in again.stderr, again.stderr
    assert f"its gateway on {gateway}, not 127.0.0.1:{other}" in errors[0]
    assert "`mnemos down` then `mnemos up`" in errors[0]
    assert "relay: up" not in again.stdout

    same = _run(shell, "up")  # the same settings: up again is fine
    assert same.returncode == 0 and f"relay: gateway {gateway}" in same.stdout, same.stderr[-3000:]

    # ENGRAM moved to a bucket that does not exist, the cluster still up: the bucket is named, not
    # "could not start the cortex actor" (the actor's start failed on it, and said only that).
    missing = {"MNEMOS_ENGRAM__URI": "s3://no-such-walk-bucket/mnemos",
               "MNEMOS_ENGRAM__STORAGE_OPTIONS": json.dumps(s3_server)}
    moved = _run(shell | missing, "up")
    errors = [line for line in moved.stderr.splitlines() if line.startswith("error:")]
    assert moved.returncode == 10 and len(errors) == 1 and "Traceback" not in moved.stderr, moved.stderr[-3000:]
    assert "ENGRAM bucket 'no-such-walk-bucket' does not exist" in errors[0] and "MNEMOS_ENGRAM__URI" in errors[0]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ctrl_c_while_the_head_starts_leaves_no_ray_head(shell: dict[str, str]) -> None:
    log = Path(shell["MNEMOS_HOME"]) / "ray-head.log"
    proc = subprocess.Popen(
        [str(BIN / "python"), "-m", "mnemos", "up"], cwd=REPO, env=shell, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a shell's foreground job
    )  # fmt: skip
    try:
        heads = until(lambda: _heads_logging_to(log), "`ray start --head` to be started", timeout=300,
                      ready=lambda found: found or proc.poll() is not None)  # fmt: skip
        assert heads, proc.communicate()
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the terminal sends it to `mnemos up`, not the head
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out[-2000:], err[-2000:])
    assert "Traceback" not in err, err
    assert "stopped by Ctrl-C while the local Ray head started; no Ray head of it is left running" in err, err
    # It once left that head running, unrecorded: `mnemos down` said no cluster was running and the
    # next `mnemos up` failed on the dashboard port the orphan held.
    assert not psutil.pid_exists(heads[0]) or psutil.Process(heads[0]).status() == psutil.STATUS_ZOMBIE
    assert _heads_logging_to(log) == []
    down = _run(shell, "down", timeout=120)
    assert down.returncode == 0 and "ray: no local cluster was running" in down.stdout, down
