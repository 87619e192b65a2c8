"""Helpers shared by the CORTEX tests."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_until(predicate: Callable[[], bool], timeout: float = 120.0, what: str = "condition") -> None:
    """Wait (bounded) for something outside Ray to happen, e.g. a job's marker file."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


def journal_records(engram: Any) -> list[dict[str, Any]]:
    """Every record of the CORTEX journal, read from ENGRAM."""
    from mnemos.cortex import read_records

    return read_records(engram)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RayHead:
    """A separate Ray cluster (``ray start --head --block``) on free 127.0.0.1 ports, in a temp dir.

    It runs in its own process group, which ``stop()`` kills — never a bare ``ray stop``, which
    would stop every cluster on the machine. Token authentication is on, with a token of its own.
    """

    PORTS = (
        "port", "ray-client-server-port", "dashboard-port", "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port",
        "node-manager-port", "object-manager-port",
    )  # fmt: skip

    def __init__(self, root: Path, *, num_cpus: int = 4, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.bin = Path(sys.executable).parent
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MNEMOS_CONFIG")}
        self.env.update(
            PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(32),
            RAY_USAGE_STATS_ENABLED="0",
            **(env or {}),
        )
        self.num_cpus = num_cpus
        self.process: subprocess.Popen[bytes] | None = None
        self.ports = {name: free_port() for name in self.PORTS}

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard-port']}"

    def start(self, timeout: float = 180.0) -> RayHead:
        cmd = [
            str(self.bin / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1", f"--num-cpus={self.num_cpus}", f"--temp-dir={self.root / 'ray'}",
            "--disable-usage-stats", *(f"--{name}={port}" for name, port in self.ports.items()),
        ]  # fmt: skip
        log = open(self.root / "head.log", "wb")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:  # the dashboard answers (401 without a token) once the head is up
            if self.process.poll() is not None:
                raise AssertionError(
                    f"ray start exited {self.process.returncode}: {(self.root / 'head.log').read_text()}"
                )
            try:
                urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"the Ray head did not start within {timeout}s") from None
                time.sleep(0.5)
        return self

    def run(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run a command (``ray job submit …``, ``python -m mnemos …``) with this cluster's environment."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        """Kill the head's process group (TERM, then KILL)."""
        if self.process is None:
            return
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                os.killpg(pgid, 0)
                time.sleep(0.2)
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait(30)
        self.process = None
