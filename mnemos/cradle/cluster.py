"""The Ray cluster under MNEMOS: connect to one, or start and stop a local one for ``mnemos up``.

Order of precedence for the address: the explicit argument, ``MNEMOS_RAY_ADDRESS`` (or
``settings.ray.address``), the cluster that ``mnemos up`` started (``$MNEMOS_HOME/cluster.json``),
else an embedded cluster inside this process.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mnemos.config import Settings, default_home
from mnemos.errors import UnavailableError

NAMESPACE = "mnemos"


def cluster_file() -> Path:
    return default_home() / "cluster.json"


def read_cluster() -> dict[str, Any] | None:
    """The cluster ``mnemos up`` started, if its head process is still alive."""
    path = cluster_file()
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    pid = info.get("pid")
    if pid is not None:
        try:
            os.kill(int(pid), 0)
        except OSError:
            path.unlink(missing_ok=True)
            return None
    return info


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Every port of the head, chosen free (two clusters on one machine never collide on 10001 & co.).
_PORTS = (
    "port", "ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
    "runtime-env-agent-port", "metrics-export-port", "node-manager-port", "object-manager-port",
)  # fmt: skip


def token_file() -> Path:
    return default_home() / "ray-token"


def _auth_env() -> dict[str, str]:
    """Ray token authentication for the cluster ``mnemos up`` started (its own token, 0600 file)."""
    path = token_file()
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": path.read_text().strip()} if path.is_file() else {}


def start_local(settings: Settings, *, timeout: float = 120.0) -> dict[str, Any]:
    """Start a local Ray head on 127.0.0.1 in its own process group, with token auth, and record it.

    The token is written to ``$MNEMOS_HOME/ray-token`` (mode 0600); clients of this cluster
    (``mnemos`` commands, ``mnemos.connect()``) read it from there; ``ray job submit`` needs
    ``RAY_AUTH_TOKEN=$(cat ~/.mnemos/ray-token)``.
    """
    if info := read_cluster():
        return info
    home = default_home()
    home.mkdir(parents=True, exist_ok=True)
    path = token_file()
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(secrets.token_hex(32))
    ports = {name: _free_port() for name in _PORTS}
    dashboard_port = settings.ray.dashboard_port
    log = open(home / "ray-head.log", "ab")  # noqa: SIM115 - handed to the child process
    ray_bin = str(Path(sys.executable).with_name("ray"))
    cmd = [
        ray_bin, "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--num-cpus={settings.ray.num_cpus}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
        "--disable-usage-stats", *(f"--{name}={port}" for name, port in ports.items()),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | _auth_env()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    port = ports["port"]
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UnavailableError(f"ray start exited with {proc.returncode}; see {home / 'ray-head.log'}")
        try:
            with socket.create_connection(("127.0.0.1", dashboard_port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        raise UnavailableError(f"the local Ray head did not start within {timeout:.0f}s")
    info = {
        "address": address,
        "pid": proc.pid,
        "dashboard": f"http://127.0.0.1:{dashboard_port}",
        "started": time.time(),
    }
    cluster_file().write_text(json.dumps(info))
    return info


def stop_local(timeout: float = 30.0) -> bool:
    """Stop the cluster ``mnemos up`` started; ``False`` when there was none."""
    info = read_cluster()
    if info is None:
        return False
    pid = int(info["pid"])
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.killpg(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    cluster_file().unlink(missing_ok=True)
    return True


def resolve_address(address: str | None, settings: Settings) -> str | None:
    """The address to connect to, or ``None`` for an embedded cluster."""
    if address:
        return address
    if settings.ray.address:
        return settings.ray.address
    for var in ("MNEMOS_RAY_ADDRESS", "RAY_ADDRESS"):  # RAY_ADDRESS: set inside `ray job submit` jobs
        if os.environ.get(var):
            return os.environ[var]
    info = read_cluster()
    return info["address"] if info else None


def init_ray(address: str | None, settings: Settings) -> None:
    """Connect this process to Ray (a no-op when it already is).

    For the cluster ``mnemos up`` started, its token goes into the environment before Ray is
    imported (Ray reads its authentication settings when it loads).
    """
    target = resolve_address(address, settings)
    info = read_cluster()
    if target and info and target == info["address"] and (auth := _auth_env()):
        fresh = "ray" not in sys.modules
        os.environ.update(auth)
        if not fresh:  # best effort when Ray was imported before: reload the token
            from ray._raylet import AuthenticationTokenLoader

            AuthenticationTokenLoader.instance().reset_cache()
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "logging_level": "WARNING"}
    try:
        if target:
            ray.init(address=target, **kwargs)
        else:
            # address="local": always a new cluster, never one that happens to run on this machine.
            # Ray warns that it turned token auth on by itself; for a private embedded cluster that is
            # what we want, not news.
            import logging

            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            ray.init(address="local", num_cpus=settings.ray.num_cpus, include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError) as exc:
        raise UnavailableError(f"cannot connect to Ray at {target or 'a new local cluster'}: {exc}") from None
