"""The Ray cluster under MNEMOS: connect to one, or start and stop a local one for ``mnemos up``.

Order of precedence for the address: the explicit argument, ``MNEMOS_RAY_ADDRESS`` (or
``settings.ray.address``), the cluster that ``mnemos up`` started (``$MNEMOS_HOME/cluster.json``),
else an embedded cluster inside this process.

The head uses Ray's standard token places and address file, so Ray's own tools reach it
(see :mod:`mnemos.cradle._raytoken`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mnemos._actors import NAMESPACE
from mnemos.config import Settings, default_home
from mnemos.cradle._haproxy import private_haproxy
from mnemos.cradle._raytoken import export_line, forget_ray_address, keep_copy, read_ray_address, resolve_token
from mnemos.errors import UnavailableError, ValidationError

__all__ = [
    "NAMESPACE",
    "cluster_file",
    "free_port",
    "free_ports",
    "haproxy_ports",
    "local_serve_env",
    "private_haproxy",
    "init_ray",
    "port_in_use",
    "read_cluster",
    "record_gateway",
    "resolve_address",
    "start_local",
    "stop_haproxy",
    "stop_local",
    "token_file",
]



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
        except OSError:  # the head died: forget it, and so does Ray's address file if it names it
            _forget(info)
            return None
    return info


def record_gateway(url: str) -> None:
    """Note in the cluster file the gateway URL the running platform serves on (``mnemos up``): a
    shell without its ``MNEMOS_RELAY__PORT`` still finds it (``mnemos.remote.implied_url``). The
    note goes with the file when the cluster stops."""
    if (info := read_cluster()) is not None:
        cluster_file().write_text(json.dumps(info | {"gateway": url}))


def _forget(info: dict[str, Any]) -> None:
    """Remove what names a stopped cluster: ``cluster.json``, the token copy, Ray's address file.

    Ray's file names the head as ``<machine address>:<GCS port>``; when ``mnemos up`` saw the head
    ready before Ray wrote the file (a busy machine), it recorded no ``ray_address``, and the file
    is ours when it names our GCS port."""
    recorded = info.get("ray_address")
    if not recorded:
        current, port = read_ray_address(), str(info.get("address", "")).rpartition(":")[2]
        recorded = current if current and port and current.endswith(f":{port}") else None
    forget_ray_address(recorded)
    cluster_file().unlink(missing_ok=True)
    token_file().unlink(missing_ok=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on now. Every probe holds its
    port until all are chosen: probed one after another, the kernel may hand the same port out twice."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port``. A port in TIME_WAIT is free (servers bind with
    ``SO_REUSEADDR``, as this probe does); an address that is not this machine's is not "in use":
    the server that binds it reports that."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


# Every port of the head, chosen free (two clusters on one machine never collide on 10001 & co.).
_RETRIED = ("timed out during startup", "used by other components", "already in use")
"""What ``ray start`` logs for a start worth one more try."""
_PORTS = (
    "port", "ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
    "runtime-env-agent-port", "metrics-export-port", "node-manager-port", "object-manager-port",
)  # fmt: skip


# On SIGTERM, `ray start --block` (Ray >= 2.59) first drains the node for up to 30 s so that Serve can move
# replicas elsewhere. `mnemos down` has already shut Serve and the control plane down, and the local head
# has no other node to move anything to, so that wait only made every `mnemos down` take ~30 s longer.
# A user who wants the drain sets the variable before `mnemos up`.
_DRAIN_VAR = "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"

# Serve holds an ingress replica open for at least this long when it stops (a rollout, a scale-down,
# `mnemos down`) so that an external load balancer (an ALB) can deregister it first: 30 s by default,
# which made every `mnemos down` take ~35 s. Here the only balancer is Serve's own HAProxy on the same
# machine, which Serve reconfigures within a second and which retries a refused connection on another
# replica; in-flight requests still finish (and buffered lineage and usage are flushed) as before.
_INGRESS_DRAIN_VAR = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"
_INGRESS_DRAIN_S = "2"


def token_file() -> Path:
    return default_home() / "ray-token"


_SHELL_ONLY = frozenset({"RAY_ADDRESS", "MNEMOS_API_KEY", "MNEMOS_TOKEN", "MNEMOS_URL"})
"""Variables of the shell that ran ``mnemos up`` that its head (and so every worker and job of the
cluster) does not inherit: where that shell's clients go, and its credential. ``mnemos up`` suggests
``export MNEMOS_API_KEY=<the bootstrap admin key>``; inherited, every job's code could read that key,
and a ``python -m mnemos`` job would act with it instead of as the user who submitted it (a job that
should talk to a gateway is given its URL and key in its own ``runtime_env``)."""


def _auth_env() -> dict[str, str]:
    """Ray token authentication for the cluster ``mnemos up`` started (its token's copy, a 0600 file)."""
    path = token_file()
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": path.read_text().strip()} if path.is_file() else {}


def start_local(settings: Settings, *, timeout: float = 300.0) -> dict[str, Any]:
    """Start a local Ray head in its own process group, with token auth, and record it.

    Ray binds the machine's address whatever ``--node-ip-address`` says (it resolves 127.0.0.1 away);
    the token guards those ports (docs/guides/security.md, "What `mnemos up` listens on").

    The token comes from Ray's standard places (generated into ``~/.ray/auth_token`` when there is
    none, never replacing one); a copy in ``$MNEMOS_HOME/ray-token`` (0600) serves MNEMOS's clients.
    The returned record holds ``token_source``, ``token_created`` and ``ray_export``, the one line
    that lets Ray's CLI reach the cluster.
    """
    if info := read_cluster():
        return info
    _check_relay_port(settings)  # before a head starts: Serve would fail on it minutes later, with a traceback
    _check_dashboard_port(settings)  # Ray would exit 1, its reason a traceback in ray-head.log
    home = default_home()
    home.mkdir(parents=True, exist_ok=True)
    token = resolve_token()
    copy = keep_copy(token)
    dashboard_port = settings.ray.dashboard_port
    from mnemos.relay.throughput import serve_env

    # Serve's high-throughput mode (relay.highThroughput) is read by Serve's processes when they start.
    env = serve_env(settings) | {k: v for k, v in os.environ.items() if k not in _SHELL_ONLY} | _auth_env()
    spill = _spill_options(settings)
    env |= spill.pop("env")
    path = home / "ray-head.log"
    for attempt in (1, 2):
        ports = dict(zip(_PORTS, free_ports(len(_PORTS)), strict=True))
        head_env = local_serve_env(env, home)  # HAProxy's ports chosen again with the others on a retry
        cmd = [
            str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", f"--num-cpus={settings.ray.num_cpus}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
            "--disable-usage-stats", *(f"--{name}={port}" for name, port in ports.items()), *spill["args"],
        ]  # fmt: skip
        with open(path, "ab") as log:
            log_start = log.tell()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=head_env)
        port = ports["port"]
        address = f"127.0.0.1:{port}"
        try:
            ray_address = _wait_ready(proc, port, dashboard_port, path, log_start, timeout)
            break
        except UnavailableError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            # Ray gives a new node a fixed 30 s to register with its GCS; a busy machine can miss that
            # once. Another process may take a chosen port between the probe and Ray's bind: new ports.
            if attempt == 2 or not any(_logged_since(path, log_start, sign) for sign in _RETRIED):
                raise
        except BaseException:  # Ctrl-C: the head runs in a session of its own, which the signal does not reach
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
    info = {
        "address": address,
        "pid": proc.pid,
        "dashboard": f"http://127.0.0.1:{dashboard_port}",
        "started": time.time(),
        "ray_address": ray_address,
        "token_source": token.source,
        "token_created": token.created,
        "ray_export": export_line(token, copy),
    }
    cluster_file().write_text(json.dumps(info))
    return info


def _spill_options(settings: Settings) -> dict[str, Any]:
    """``args`` for ``ray start`` and ``env`` for the head that make Ray spill objects where
    ``ray.spillUri`` says (by default into ENGRAM's bucket when ENGRAM is on S3, as KubeRay's manifests
    do): the S3 endpoint goes in the system config, the credentials only in the environment (Ray
    shows its system config on every Ray process's command line)."""
    from mnemos.engram import spilling_config, spilling_env

    uri = settings.ray.spill_target(settings.engram)
    if uri is None:
        return {"args": [], "env": {}}
    on_s3 = uri.startswith("s3://")
    options = settings.engram.storage_options if on_s3 else None
    if on_s3 and not settings.ray.spill_uri:  # ENGRAM's own bucket: say what is wrong with ENGRAM's settings
        from mnemos.engram import Engram

        Engram.from_settings(settings).check()  # its errors name engram.uri, the setting to fix
    try:
        config = spilling_config(uri, options)
    except (UnavailableError, ValidationError) as exc:
        raise type(exc)(f"ray.spillUri: {exc.message}", param="ray.spillUri") from None
    return {"args": [f"--system-config={json.dumps(config)}"], "env": spilling_env(options) if on_s3 else {}}


def local_serve_env(env: dict[str, str], home: Path) -> dict[str, str]:
    """``env`` as ``mnemos up`` gives it to a local head: Ray's and Serve's shutdown drains off (see
    ``_DRAIN_VAR`` and ``_INGRESS_DRAIN_VAR``) and, when ``env`` turns HAProxy on, free ports for its
    stats page and exporter and HAProxy made the platform's own (:func:`private_haproxy`). Variables
    ``env`` sets are kept. Benchmarks that start an embedded cluster take it too, to measure the same path."""
    env = {_DRAIN_VAR: "0", _INGRESS_DRAIN_VAR: _INGRESS_DRAIN_S} | env | {"PATH": _with_this_python(env)}
    return private_haproxy(ingress_ports(haproxy_ports(env)), home)


def _with_this_python(env: dict[str, str]) -> str:
    """``PATH`` with this interpreter's folder first: a ``ray job submit -- python -m mnemos …`` runs
    its entrypoint in the head's environment, where ``python`` was whatever came first on the PATH of
    the shell that ran ``mnemos up`` (a virtualenv not activated: a Python without MNEMOS)."""
    folder = str(Path(sys.executable).parent)
    rest = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p != folder]
    return os.pathsep.join([folder, *rest])


_INGRESS_PORTS = (("HTTP", 30000), ("GRPC", 40000))
"""Serve's direct-ingress port ranges (``RAY_SERVE_DIRECT_INGRESS_{MIN,MAX}_{HTTP,GRPC}_PORT``) start here."""
_INGRESS_WINDOW = 100
_INGRESS_WINDOWS = 27  # windows of 100 from 30000 stay below Linux's ephemeral ports (32768-)


def ingress_ports(env: dict[str, str]) -> dict[str, str]:
    """``env`` with a window of ports for Serve's direct ingress that nothing listens on, when it
    turns HAProxy on and names none. Every Serve counts its ingress replicas' HTTP and gRPC ports up
    from 30000 and 40000: with two platforms on one machine, a replica of the second that restarted
    was given a port the first's gateway held, and HAProxy sent it requests, API keys included,
    until the replica found the port taken (the keys, unknown there, got 401s)."""
    names = [f"RAY_SERVE_DIRECT_INGRESS_{end}_{kind}_PORT" for kind, _ in _INGRESS_PORTS for end in ("MIN", "MAX")]
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") != "1" or any(env.get(name) for name in names):
        return env
    listening = _listening_ports()
    for k in range(_INGRESS_WINDOWS):
        windows = {kind: range(base + k * _INGRESS_WINDOW, base + (k + 1) * _INGRESS_WINDOW)
                   for kind, base in _INGRESS_PORTS}  # fmt: skip
        if not any(port in window for window in windows.values() for port in listening):
            return env | {
                f"RAY_SERVE_DIRECT_INGRESS_{end}_{kind}_PORT": str(window.start if end == "MIN" else window.stop)
                for kind, window in windows.items() for end in ("MIN", "MAX")
            }  # fmt: skip
    return env  # every window holds a listener: Serve's own range (it skips ports it cannot bind)


def _listening_ports() -> set[int]:
    """The TCP ports something listens on, on any address of this machine."""
    import psutil

    try:  # every socket of the machine is listed, its process only when it is ours
        return {c.laddr.port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.laddr}
    except (psutil.Error, OSError):  # not readable here: Serve's own range, as before
        return set(range(30000, 30000 + _INGRESS_WINDOW * _INGRESS_WINDOWS))


_HAPROXY_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT")
"""Serve's HAProxy binds its stats page (8404) and Prometheus exporter (9101) on fixed ports by default."""


def haproxy_ports(env: dict[str, str]) -> dict[str, str]:
    """``env`` with free ports for HAProxy's stats page and exporter when it turns HAProxy on and does
    not name them: on the fixed defaults a second platform on the machine (another user's, a test
    suite's) failed to start ("cannot bind socket … [0.0.0.0:9101]")."""
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":
        return env
    missing = [name for name in _HAPROXY_PORTS if not env.get(name)]
    return env | {name: str(port) for name, port in zip(missing, free_ports(len(missing)), strict=True)}


def _check_relay_port(settings: Settings) -> None:
    """Refuse to start when something already listens on ``relay.host:relay.port``.

    A holder that runs under a live Ray process is another platform's gateway: the advice is another
    port, or stopping that platform, never killing it. The usual other holder is a Ray Serve proxy
    (``haproxy``) left running by ``ray stop --force``, which stops Ray's processes but not the
    HAProxy Serve started: the new cluster's Serve then fails to bind, and ``mnemos up`` with it.
    """
    host, port = settings.relay.host, settings.relay.port
    if not port_in_use(host, port):
        return
    pid, name = _listener(port)
    holder = f" by {name} (pid {pid})" if pid else ""
    if pid and _of_running_ray(pid):  # another platform's gateway (another MNEMOS_HOME's): killing it breaks that one
        raise UnavailableError(
            f"relay.port {port} on {host} is in use{holder}, which belongs to a running Ray cluster (the gateway of "
            "another platform on this machine, such as another MNEMOS_HOME's `mnemos up`): serve this one on another "
            "port with MNEMOS_RELAY__PORT, or stop that platform first (`mnemos down` with its MNEMOS_HOME)",
            param="relay.port",
        )
    stop = f"stop it (`kill {pid}`)" if pid else "stop what holds it"
    raise UnavailableError(
        f"relay.port {port} on {host} is in use{holder}. A Ray Serve proxy (haproxy) left by `ray stop --force` "
        f"is the usual holder: {stop}, or serve on another port with MNEMOS_RELAY__PORT",
        param="relay.port",
    )


def _of_running_ray(pid: int) -> bool:
    """Whether process ``pid`` is a Ray process (Serve's proxy) or runs under one (Serve's HAProxy,
    started by its HAProxy manager actor); an orphaned HAProxy (``ray stop --force``) is not."""
    try:
        import psutil

        proc = psutil.Process(pid)
        return proc.name().startswith("ray::") or _under_ray(proc)
    except Exception:  # noqa: BLE001 - not visible here: the older advice stands
        return False


RAY_WORKER_PORTS = range(10002, 20000)
"""The ports Ray's workers take by default (``ray start --min-worker-port/--max-worker-port``)."""


def _check_dashboard_port(settings: Settings) -> None:
    """Refuse a ``ray.dashboardPort`` Ray cannot bind: one inside its workers' port range (``ray
    start`` refuses it) or one something already listens on."""
    port = settings.ray.dashboard_port
    if port in RAY_WORKER_PORTS:
        raise ValidationError(
            f"ray.dashboardPort {port} is inside the range Ray keeps for its workers ({RAY_WORKER_PORTS.start}-"
            f"{RAY_WORKER_PORTS.stop - 1}): choose a port outside it (default 8265) with MNEMOS_RAY__DASHBOARD_PORT",
            param="ray.dashboardPort",
        )
    if port_in_use("127.0.0.1", port):
        pid, name = _listener(port)
        holder = f" by {name} (pid {pid})" if pid else ""
        raise UnavailableError(f"ray.dashboardPort {port} is in use{holder}: stop it, or choose another port with "
                               "MNEMOS_RAY__DASHBOARD_PORT", param="ray.dashboardPort")  # fmt: skip


def _listener(port: int) -> tuple[int | None, str]:
    """``(pid, process name)`` of what listens on TCP ``port`` (``(None, "")`` when not visible here)."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid, psutil.Process(conn.pid).name()
    except Exception:  # noqa: BLE001 - naming the holder is a courtesy; the error stands without it
        pass
    return None, ""


def _wait_ready(
    proc: subprocess.Popen[bytes], port: int, dashboard_port: int, log: Path, log_start: int, timeout: float
) -> str | None:
    """Wait until ``ray start`` finished starting the head; returns what it wrote to Ray's address file.

    Ready means: the dashboard accepts connections and ``ray start`` got past the node's start
    (it then records the head in Ray's address file and logs "Ray runtime started"). A ``ray start``
    that exits first (an overloaded machine: "The current node timed out during startup") is an error
    at once, never a client left waiting on a GCS that is gone.

    Raises:
        UnavailableError: ``ray start`` exited, or the head was not ready within ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UnavailableError(f"ray start exited with {proc.returncode}; see {log}")
        recorded = read_ray_address()
        ours = recorded if recorded and recorded.endswith(f":{port}") else None
        # The log line covers an address file that another `ray start` rewrote meanwhile.
        if (ours or _logged_since(log, log_start, "Ray runtime started")) and _accepts(dashboard_port):
            return ours
        time.sleep(0.2)
    raise UnavailableError(f"the local Ray head did not start within {timeout:.0f}s; see {log}")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _logged_since(log: Path, offset: int, text: str) -> bool:
    with contextlib.suppress(OSError), open(log, "rb") as f:
        f.seek(offset)
        return text.encode() in f.read()
    return False


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
    _forget(info)
    return True


def stop_haproxy(home: Path | None = None, *, orphans_only: bool = False, timeout: float = 5.0) -> list[int]:
    """Stop the HAProxy processes that Serve started for ``home``'s ``mnemos up`` (default: this
    ``$MNEMOS_HOME``); returns their process ids.

    Killing the Ray head (``kill -9`` of its raylet, an out-of-memory kill) leaves Serve's HAProxy
    running on its own, holding the relay port and answering every request with a 500. Ours are
    told apart by their command line: a HAProxy (or the wrapper that becomes one) of this user whose
    ``-f`` config lies in ``home``'s HAProxy folder (:func:`private_haproxy`). Another user's, another
    home's, or one whose config lies elsewhere (a ``RAY_SERVE_HAPROXY_CONFIG_FILE_LOC`` of the user's)
    is never touched.

    Args:
        orphans_only: stop only those no Ray process runs any more (what ``mnemos up`` clears before
            it starts a head); without it every one of this home (``mnemos down``).
        timeout: seconds to wait after SIGTERM before SIGKILL.
    """
    from mnemos._deps import optional

    psutil = optional("psutil")  # Ray's dependency: without it, no HAProxy of Serve's to find either
    if psutil is None:
        return []
    folders = _haproxy_folders(home or default_home())
    found = []
    for proc in psutil.process_iter(["cmdline", "uids"]):
        with contextlib.suppress(psutil.Error):
            uids, cmdline = proc.info["uids"], proc.info["cmdline"] or []
            if uids is None or uids.real != os.getuid() or proc.pid == os.getpid():
                continue
            if _haproxy_config(cmdline, folders) and not (orphans_only and _under_ray(proc)):
                found.append(proc)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(found, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return [proc.pid for proc in found]


def _haproxy_folders(home: Path) -> list[Path]:
    """Where :func:`private_haproxy` may have put HAProxy's files for ``home`` (``_haproxy.folders``)."""
    from mnemos.cradle._haproxy import folders

    return [Path(os.path.realpath(folder)) for folder in folders(home / "haproxy")]


def _haproxy_config(cmdline: list[str], folders: list[Path]) -> bool:
    """Whether ``cmdline`` runs HAProxy (the binary, its wrapper ``bin/haproxy`` or the wrapper's
    ``_haproxy.py``) with a ``-f`` config inside one of ``folders``."""
    if not any(Path(arg).name in ("haproxy", "_haproxy.py") for arg in cmdline[:3]):
        return False
    for flag, value in zip(cmdline, cmdline[1:], strict=False):
        if flag == "-f" and value.startswith("/"):
            config = Path(os.path.realpath(value))
            if any(config.is_relative_to(folder) for folder in folders):
                return True
    return False


def _under_ray(proc: Any) -> bool:
    """Whether a Ray process (a worker such as Serve's proxy actor, a raylet) is among ``proc``'s parents."""
    import psutil  # (stop_haproxy found it)

    for parent in proc.parents():
        with contextlib.suppress(psutil.Error):  # a parent that exited meanwhile
            words = " ".join(parent.cmdline()[:2])
            if parent.name().startswith("ray::") or any(w in words for w in ("ray::", "raylet", "default_worker.py")):
                return True
    return False


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


_REACH_TIMEOUT_S = 5.0


def _check_reachable(address: str) -> None:
    """Fail fast when nothing listens at ``address`` (``host:port`` or ``ray://host:port``): Ray
    itself retries a dead address for minutes, printing only its own warnings."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or "/" in hostport:  # "auto", "local" and the like: Ray resolves them
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_REACH_TIMEOUT_S).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        raise UnavailableError(
            f"no Ray cluster answers at {address} ({reason}): start that cluster or correct the address; "
            "with none set (--address, ray.address, MNEMOS_RAY_ADDRESS, RAY_ADDRESS), `mnemos up` starts a local one"
        ) from None


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
        if not fresh:  # Ray was imported first: it read RAY_AUTH_MODE then; make it read it again
            from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

            Config.initialize("")  # as Ray's own `_enable_token_auth` does
            AuthenticationTokenLoader.instance().reset_cache()
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "logging_level": "WARNING"}
    try:
        if target:
            _check_reachable(target)
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
