"""``mnemos up|down|status``: bootstrap and tear down the platform (CRADLE)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import typer

from mnemos.cli._output import Output, console, emit

__all__ = ["down", "register", "status", "up"]


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(status)


def up(
    address: str | None = typer.Option(None, envvar="MNEMOS_RAY_ADDRESS", help="Existing cluster to use."),
) -> None:
    """Start a local Ray cluster (or connect to ADDRESS) and the control plane."""
    import mnemos
    from mnemos.config import load_settings
    from mnemos.cradle import COMPONENTS, start_local
    from mnemos.cradle import up as control_up
    from mnemos.remote import is_url

    if is_url(address):
        from mnemos.errors import ValidationError

        raise ValidationError(f"--address: {address!r} is a gateway URL; `mnemos up` takes a Ray address "
                              "(host:6379 or ray://host:10001). To use a running gateway: mnemos login URL",
                              param="address")  # fmt: skip
    settings = load_settings()
    local = not address and not settings.ray.address  # the cluster `mnemos up` starts (or started) here
    if local:
        from mnemos.client import embedded_holder
        from mnemos.config import default_home
        from mnemos.cradle.cluster import read_cluster

        if (holder := embedded_holder(settings)) is not None:
            from mnemos.errors import ConflictError

            raise ConflictError(f"engram: process {holder} hosts an embedded MNEMOS platform on "
                                f"{settings.engram.root()} (a notebook's mnemos.connect() with no platform up): a "
                                "second CORTEX on its journal would run its jobs twice. Stop that process (or its "
                                "kernel) first, then `mnemos up`", param="engram")  # fmt: skip

        if read_cluster() is None:  # a HAProxy left by this home's head that died holds the relay port
            if heads := _unrecorded_heads():
                from mnemos.errors import ConflictError

                raise ConflictError(f"ray: a Ray head (pid {heads[0]}) that an interrupted `mnemos up` started for "
                                    f"{default_home()} is still running but was never recorded: "
                                    "`mnemos down` stops it, then `mnemos up`", param="ray")  # fmt: skip
            _say_stopped_haproxy(orphans_only=True)
        try:
            info = start_local(settings)
        except KeyboardInterrupt:  # start_local stopped the head it was starting (Ctrl-C does not reach it)
            _stop_unrecorded_heads(timeout=5.0)  # and anything of this home's left unrecorded besides
            typer.echo("stopped by Ctrl-C while the local Ray head started; no Ray head of it is left running: "
                       "run `mnemos up` again", err=True)  # fmt: skip
            raise typer.Exit(130) from None
        address = info["address"]
        console.print(f"ray: local cluster at {address} (dashboard {info['dashboard']})")
        _print_ray_habits(info)
    quiet_serve_narration()
    try:
        client = mnemos.connect(address, settings=settings)
        client.engram.check()  # a missing bucket named here, not as "could not start the cortex actor"
        control_up(settings, client.engram)
    except KeyboardInterrupt:
        typer.echo("stopped by Ctrl-C while the control plane started (the Ray cluster is up): run `mnemos up` "
                   "again to finish, or `mnemos down`", err=True)  # fmt: skip
        raise typer.Exit(130) from None
    gateway = _check_gateway_address(settings)
    if local:  # a new shell finds this gateway without the port variable of this one
        from mnemos.cradle.cluster import record_gateway

        record_gateway(gateway)
    for name, _ in COMPONENTS:
        console.print(f"{name}: up")
    console.print(f"relay: gateway {gateway} (OpenAI clients: base_url {gateway}/v1)")
    for hook in _UP_HOOKS:
        hook(client)
    console.print(f"engram: {client.engram.uri}")


def quiet_serve_narration() -> None:
    """Keep Serve's INFO lines ("Started Serve in namespace…", "Connecting to existing Serve app…
    New http_options… will not be applied", "Application 'mnemos' is ready…") off a newcomer's
    terminal: `up` says itself where the gateway is. Serve's warnings and errors still show."""
    import logging

    from ray import serve  # noqa: F401 - importing Serve sets its logger to INFO: quiet it after

    logging.getLogger("ray.serve").setLevel(logging.WARNING)


def _unrecorded_heads() -> list[int]:
    """Process ids of the ``ray start --head`` processes this ``$MNEMOS_HOME``'s `mnemos up` started
    but never recorded in ``cluster.json`` (it was interrupted while the head started, so `mnemos down`
    did not know them). They are told apart by their output: this home's ``ray-head.log``."""
    from mnemos.config import default_home
    from mnemos.cradle.cluster import read_cluster

    try:
        import psutil
    except ImportError:  # pragma: no cover - a dependency of MNEMOS
        return []
    log = os.path.realpath(default_home() / "ray-head.log")
    recorded = (read_cluster() or {}).get("pid")
    found = []
    for proc in psutil.process_iter(["cmdline", "uids"]):
        cmd = proc.info["cmdline"] or []
        if proc.pid == recorded or "--head" not in cmd or "start" not in cmd or not proc.info["uids"]:
            continue
        if proc.info["uids"].real != os.getuid() or not any(os.path.basename(arg) == "ray" for arg in cmd[:2]):
            continue
        with contextlib.suppress(OSError):
            if os.path.realpath(f"/proc/{proc.pid}/fd/1") == log:
                found.append(proc.pid)
    return found


def _stop_unrecorded_heads(timeout: float = 30.0) -> list[int]:
    """Stop :func:`_unrecorded_heads` (each leads a process group: `mnemos up` starts it in a session
    of its own); returns their process ids."""
    import signal
    import time

    heads = _unrecorded_heads()
    for pid in heads:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in heads:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            while time.monotonic() < deadline:
                os.killpg(pid, 0)
                time.sleep(0.2)
            os.killpg(pid, signal.SIGKILL)
    return heads


def _check_gateway_address(settings: Any) -> str:
    """The gateway's URL; refused when a platform already up serves it elsewhere than ``relay.*`` says
    (Serve keeps the host and port it started with: a second `mnemos up` cannot move it)."""
    host, port = settings.relay.host, settings.relay.port
    try:
        from ray.serve.context import _get_global_client

        served = _get_global_client().http_config
        served_host, served_port = served.host, int(served.port)
    except Exception:  # noqa: BLE001 - Serve's client moved or is not running: report the settings
        served_host, served_port = host, port
    url = f"http://{served_host}:{served_port}"
    if (served_host, served_port) != (host, port):
        from mnemos.errors import ConflictError

        raise ConflictError(f"relay.port: this platform is already up, its gateway on {url}, not {host}:{port} "
                            "(MNEMOS_RELAY__PORT / relay.host): a running platform keeps its address. Use "
                            f"{url}, or `mnemos down` then `mnemos up` to serve on {host}:{port}",
                            param="relay.port")  # fmt: skip
    return url


def _print_ray_habits(info: dict) -> None:
    """Say which Ray token the head uses and the one line Ray's CLI needs (as `ray start` does)."""
    if "ray_export" not in info:  # a cluster recorded by an older MNEMOS
        return
    made = "new token written to" if info["token_created"] else "token from"
    console.print(f"ray: token auth, {made} {info['token_source']}; ray.init() and ray.init('auto') find this cluster")
    console.print("ray: for the ray CLI (ray status, ray job submit) in a new shell, run:")
    console.print(f"  {info['ray_export']}")


def _soul_bootstrap(client: object) -> None:
    """Print the bootstrap admin credential, once per ENGRAM root (only its hash is stored)."""
    from mnemos.soul.bootstrap import bootstrap_hook

    bootstrap_hook(client, console.print)


# Components that print something once on `up` add a hook.
_UP_HOOKS: list = [_soul_bootstrap]


def down() -> None:
    """Stop the control plane and the local cluster `mnemos up` started."""
    from mnemos.cli._session import platform_address
    from mnemos.cradle import down as control_down
    from mnemos.cradle import stop_local

    if platform_address():
        import mnemos

        with quiet_ray():  # Ray narrates the actors it kills: "(raylet) … killed by `ray.kill`"
            mnemos.connect(platform_address())
            stopped = control_down()
            import ray

            ray.shutdown()
        for name in stopped:
            console.print(f"{name}: stopped")
    if stop_local():
        console.print("ray: local cluster stopped")
    else:
        console.print("ray: no local cluster was running")
    for pid in _stop_unrecorded_heads():
        console.print(f"ray: stopped pid {pid}, a Ray head that an interrupted `mnemos up` started and never recorded")
    _say_stopped_haproxy(orphans_only=False)


def _say_stopped_haproxy(*, orphans_only: bool) -> None:
    """Stop the HAProxy processes Serve started for this MNEMOS_HOME and left behind (a head killed
    with ``kill -9``: its HAProxy keeps the relay port and answers 500), and say so."""
    from mnemos.cradle.cluster import stop_haproxy

    for pid in stop_haproxy(orphans_only=orphans_only):
        console.print(f"haproxy: stopped pid {pid}, left running by this MNEMOS_HOME's Ray head")


@contextlib.contextmanager
def quiet_ray() -> Iterator[None]:
    """Hold back what Ray prints while the block runs: its driver's threads (the error messages it
    relays from the cluster, printed to stdout as ``(raylet) …``), its loggers and its C++ core, which
    write to the process's file descriptors 1 and 2, so these are sent to a file for the while.
    MNEMOS's own log records still reach the terminal; when the block raises, what Ray printed is
    written to stderr after all (it may tell why), and the error goes on.
    """
    import logging
    import sys
    import tempfile

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    own = logging.getLogger("mnemos")
    terminal = open(os.dup(saved[2]), "w", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
    handler = logging.StreamHandler(terminal)
    handler.setLevel(logging.WARNING)  # what Python's last-resort handler shows when none is configured
    streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile() as captured:
        sink = open(os.dup(captured.fileno()), "w", encoding="utf-8", errors="replace")  # noqa: SIM115
        for fd in (1, 2):
            os.dup2(captured.fileno(), fd)
        sys.stdout = sys.stderr = sink  # Ray prints to whatever they are when it prints
        own.addHandler(handler)
        propagate, own.propagate = own.propagate, False
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            own.removeHandler(handler)
            own.propagate = propagate
            terminal.close()
            sink.close()
            sys.stdout, sys.stderr = streams
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            if failed:
                captured.seek(0)
                sys.stderr.write(captured.read().decode("utf-8", "replace"))
                sys.stderr.flush()


def status(output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """Cluster, control-plane actors and registry counts."""
    from mnemos.cli._session import open_client, platform_address

    client = open_client(connect=bool(platform_address()))
    data = client.status()
    if "url" in data:  # a gateway's /v1/status
        rows = [("gateway", data["url"])]
    else:
        rows = [("engram", data["engram"]), ("platform", "up" if data["connected"] else "down")]
    if data.get("connected"):
        rows.append(("ray", data["ray"]["address"]))
        rows.extend((f"  {k}", v) for k, v in data["ray"]["resources"].items())
        rows.extend((f"actor {k}", v) for k, v in data["control_plane"].items())
    rows.extend(_node_rows(data.get("nodes") or []))
    rows.extend((f"resources {k}", v) for k, v in sorted(data["resources"].items()))
    emit(data, output, ("", ""), rows)


def _node_rows(nodes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """One row per Ray node: ``node <id12> alive|dead  address  labels  resources`` (a dead one with Ray's reason)."""
    rows = []
    for node in nodes:
        labels = ",".join(f"{k}={v}" for k, v in node["labels"].items()) or "-"
        res = " ".join(f"{k}={v:g}" for k, v in node["resources"].items() if k != "memory")
        head = " head" if node.get("head") else ""
        reason = f"  ({node['reason']})" if node.get("reason") else ""
        address = node.get("address", "-")  # the gateway shows addresses to operators only
        rows.append((f"node {node['id'][:12]}", f"{node['state']}{head}  {address}  {labels}  {res}{reason}"))
    return rows
