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
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
from tests_support import free_port
from tests_support import until as wait_until

T = "mnemos.cortex.testing"


class NoCortex:
    """CORTEX for routes that must refuse a body before it reaches CORTEX: reaching it fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused body reached CORTEX ({name})")


@contextlib.contextmanager
def jobs_routes(cortex: Any, jobs_router: Any = None) -> Iterator[Any]:
    """A ``TestClient`` of the ``/v1/jobs`` routes (``jobs_router``, one ``build_router`` made; the
    default ``router``, authentication off, if None) over ``cortex`` (an actor handle, a ``NoCortex()``)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from mnemos.cortex.http import cortex_handle, router

    app = FastAPI()
    app.include_router(router if jobs_router is None else jobs_router)
    app.dependency_overrides[cortex_handle] = lambda: cortex
    with TestClient(app) as http:
        yield http


def journal_records(engram: Any) -> list[dict[str, Any]]:
    """Every record of the CORTEX journal, read from ENGRAM."""
    from mnemos.cortex import read_records

    return read_records(engram)


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
            # stop() sends SIGTERM: without this, `ray start --block` first drains the node for up to 30 s.
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
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
        with open(self.root / "head.log", "wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class PrivateCortex:
    """A CORTEX actor of a test's own, on a ``GatedEngram`` in ``root``, called as ``client.jobs`` calls one.

    Args:
        root: its folder (ENGRAM root and gate files).
        settings: the package settings (queues; its first pool, with one worker, unless ``pools``).
        pools: pool documents instead.
        **cortex: ``settings.cortex`` fields to change (``journal_timeout``, ``retention`` …).
    """

    def __init__(self, root: Path, settings: Any, pools: list[dict[str, Any]] | None = None, **cortex: Any) -> None:
        from mnemos.config import PoolConfig
        from mnemos.cortex.scheduler import CortexActor
        from mnemos.cortex.testing import GatedEngram

        self.gate = root / "gate"
        self.engram = GatedEngram(str(root / "engram"), gate=str(self.gate))
        configs = [PoolConfig.model_validate(p) for p in pools] if pools else [
            settings.neuron.pools[0].model_copy(update={"size": 1})
        ]  # fmt: skip
        neuron = settings.neuron.model_copy(update={"pools": configs})
        self.settings = settings.cortex.model_copy(update=cortex)
        self.actor = CortexActor.options(
            name=f"cortex-private-{uuid.uuid4().hex[:6]}", namespace="mnemos", max_restarts=-1,
            max_concurrency=1000, num_cpus=0,
        ).remote(self.settings, neuron, self.engram, "private")  # fmt: skip
        ray.get(self.actor.info.remote(), timeout=300)

    def crash(self) -> None:
        """Kill the actor's process (Ray restarts it) and wait until it is gone."""
        pid = self.call("info")["pid"]
        ray.kill(self.actor, no_restart=False)
        wait_until(lambda: not _alive(pid), what=f"CORTEX (pid {pid}) to die")

    def call(self, method: str, *args: Any, timeout: float = 300) -> Any:
        """Call the actor; while Ray restarts it, again (bounded), as ``client.jobs`` does."""
        for _ in range(600):
            try:
                return ray.get(getattr(self.actor, method).remote(*args), timeout=timeout)
            except ray.exceptions.RayTaskError as exc:
                raise exc.cause from None
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError):
                time.sleep(0.2)
        raise AssertionError(f"{method} did not answer while the actor restarted")

    def close(self) -> None:
        for kind in ("block", "fail"):
            self.lift(kind)
        ray.kill(self.actor, no_restart=True)

    def submit(self, job_id: str, fn: str = "add", *args: Any) -> list[str]:
        from mnemos.cortex.job import JobSubmission

        return self.call("submit_many", [JobSubmission(id=job_id, function=f"{T}:{fn}", args=list(args or (1, 2)))])

    def set(self, kind: str, records: str) -> None:
        Path(f"{self.gate}.{kind}").write_text(records)

    def lift(self, kind: str) -> None:
        Path(f"{self.gate}.{kind}").unlink(missing_ok=True)

    def records(self, job_id: str) -> Counter[str]:
        from mnemos.cortex import read_records
        from mnemos.engram import Engram

        return Counter(r["t"] for r in read_records(Engram(self.engram.uri)) if r.get("id") == job_id)
