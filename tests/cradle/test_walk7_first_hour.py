"""`mnemos up` when the relay port is held: by another platform's gateway (a process under a live
Ray process, as Serve's HAProxy is under its HAProxy manager) it says so and never suggests killing
it; by an orphaned HAProxy (left by `ray stop --force`) the advice to stop it stands. And a platform
up on another port: a new shell without the port variable reaches its gateway, and `mnemos down`
forgets it.

Each command runs as a new process with a private HOME, Ray temp dir and MNEMOS_HOME."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from tests_support import REPO, free_port

_HOLDER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("ready", flush=True)
time.sleep(600)
"""


def _mnemos(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": str(home), "MNEMOS_HOME": str(home / "mnemos"),
            "PYTHONPATH": str(REPO), "RAY_TMPDIR": str(home / "rt"), "RAY_USAGE_STATS_ENABLED": "0",
            "MNEMOS_RAY__DASHBOARD_PORT": str(free_port())}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "mnemos", *args], env={**base, **env}, cwd=home,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def _listen_under(parent_script: Path, port: int) -> subprocess.Popen[str]:
    """``parent_script`` (a Python file) starts the listener as its child and waits."""
    holder = parent_script.with_name("holder.py")
    holder.write_text(_HOLDER)
    parent_script.write_text(textwrap.dedent(f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, {str(holder)!r}, "{port}"], stdout=subprocess.PIPE, text=True)
        print(child.pid, child.stdout.readline().strip(), flush=True)
        child.wait()
    """))
    proc = subprocess.Popen([sys.executable, str(parent_script)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().split()[1] == "ready"
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, 9)
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def test_a_relay_port_held_under_a_live_ray_process_is_another_platforms(tmp_path: Path) -> None:
    """It said "A Ray Serve proxy (haproxy) left by `ray stop --force` is the usual holder: stop it
    (`kill N`)" of the gateway of another MNEMOS_HOME's running platform."""
    port = free_port()
    ray_side = tmp_path / "ray"
    ray_side.mkdir()
    proc = _listen_under(ray_side / "raylet", port)  # a Ray process (its command line names raylet)
    try:
        out = _mnemos(tmp_path, "up", MNEMOS_RELAY__PORT=str(port))
    finally:
        _stop(proc)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out
    line = out.stderr.strip().splitlines()[-1]
    assert f"relay.port {port} on 127.0.0.1 is in use by " in line and "belongs to a running Ray cluster" in line
    assert "MNEMOS_RELAY__PORT" in line and "`mnemos down` with its MNEMOS_HOME" in line
    assert "kill" not in line, line


def test_an_orphaned_holder_of_the_relay_port_is_still_to_be_stopped(tmp_path: Path) -> None:
    port = free_port()
    holder = tmp_path / "holder.py"
    holder.write_text(_HOLDER)
    proc = subprocess.Popen([sys.executable, str(holder), str(port)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        out = _mnemos(tmp_path, "up", MNEMOS_RELAY__PORT=str(port))
    finally:
        _stop(proc)
    line = out.stderr.strip().splitlines()[-1]
    assert out.returncode != 0 and f"stop it (`kill {proc.pid}`)" in line, out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_new_shell_finds_the_gateway_of_a_platform_up_on_another_port(tmp_path: Path) -> None:
    """After `MNEMOS_RELAY__PORT=P mnemos up`, a shell with its key and no port variable reached
    http://127.0.0.1:8080 ("not reachable"); `mnemos down` forgets the served URL with the cluster."""
    port = free_port()
    (tmp_path / ".ray").mkdir()
    raytmp = tempfile.mkdtemp(prefix="rw", dir="/tmp")  # short: Ray's socket paths live under it
    shell = {"RAY_TMPDIR": raytmp, "MNEMOS_RAY__DASHBOARD_PORT": str(free_port())}
    try:
        up = _mnemos(tmp_path, "up", MNEMOS_RELAY__PORT=str(port), **shell)
        assert up.returncode == 0, up
        key = next(w for w in up.stdout.split() if w.startswith("mk_"))
        cluster = tmp_path / "mnemos" / "cluster.json"
        assert json.loads(cluster.read_text())["gateway"] == f"http://127.0.0.1:{port}"
        listing = _mnemos(tmp_path, "get", "model", MNEMOS_API_KEY=key, **shell)  # no MNEMOS_RELAY__PORT
        assert listing.returncode == 0 and listing.stdout.startswith("NAME"), listing
        refused = _mnemos(tmp_path, "--url", f"http://127.0.0.1:{port}", "down", **shell)
        assert refused.returncode == 2 and cluster.is_file(), refused
    finally:
        down = _mnemos(tmp_path, "down", **shell)
        shutil.rmtree(raytmp, ignore_errors=True)
    assert down.returncode == 0 and "ray: local cluster stopped" in down.stdout, down
    assert not cluster.exists()
