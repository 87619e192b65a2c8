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
    if not address and not settings.ray.address:
        from mnemos.client import embedded_holder
        from mnemos.cradle.cluster import read_cluster

        if (holder := embedded_holder(settings)) is not None:
            from mnemos.errors import ConflictError

            raise ConflictError(f"engram: process {holder} hosts an embedded MNEMOS platform on "
                                f"{settings.engram.root()} (a notebook's mnemos.connect() with no platform up): a "
                                "second CORTEX on its journal would run its jobs twice. Stop that process (or its "
                                "kernel) first, then `mnemos up`", param="engram")  # fmt: skip

        if read_cluster() is None:  # a HAProxy left by this home's head that died holds the relay port
            _say_stopped_haproxy(orphans_only=True)
        info = start_local(settings)
        address = info["address"]
        console.print(f"ray: local cluster at {address} (dashboard {info['dashboard']})")
        _print_ray_habits(info)
    client = mnemos.connect(address, settings=settings)
    control_up(settings, client.engram)
    for name, _ in COMPONENTS:
        console.print(f"{name}: up")
    for hook in _UP_HOOKS:
        hook(client)
    console.print(f"engram: {client.engram.uri}")


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
