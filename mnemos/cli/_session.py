"""How CLI commands reach the platform.

With a gateway URL configured (``mnemos --url URL``, ``MNEMOS_URL``, or ``mnemos login URL``)
every command goes through RELAY's authenticated HTTP API with the stored credential (a
``RemoteClient``); without one, the embedded mode reads and writes ENGRAM as the local admin.
"""

from __future__ import annotations

import os
from typing import Any

from mnemos.client import Client
from mnemos.config import load_settings

__all__ = ["event_position", "open_client", "platform_address", "remote_url", "require_local"]


def remote_url() -> str | None:
    """The gateway URL the CLI talks to, or ``None`` for the embedded mode."""
    from mnemos.remote import endpoint_url

    return endpoint_url()


def require_local(command: str) -> None:
    """Refuse ``mnemos <command>`` when a gateway URL is configured: it works on the platform's machine.

    Such commands read or write ENGRAM, the backup store or the Ray cluster of this machine; over
    ``--url`` they would act on the wrong platform (or fail), so they stop with one line instead.

    Raises:
        ValidationError: a gateway URL is configured (``--url``, ``MNEMOS_URL``, ``mnemos login``).
    """
    if remote_url():
        from mnemos.errors import ValidationError

        raise ValidationError(
            f"`mnemos {command}` works on the platform's own machine, not over --url: "
            "run it there (or unset MNEMOS_URL / mnemos logout)",
            param="url",
        )


def platform_address() -> str | None:
    """The Ray address of a running platform, or ``None`` when none is up."""
    from mnemos.cradle import read_cluster

    settings = load_settings()
    info = read_cluster()
    return settings.ray.address or os.environ.get("MNEMOS_RAY_ADDRESS") or (info["address"] if info else None)


def open_client(*, publish: bool = False, connect: bool = False) -> Any:
    """A client for a command: a ``RemoteClient`` when a gateway URL is configured, else embedded.

    Embedded reads need no cluster: they go to ENGRAM directly. Writes (``publish``) connect when
    a platform is up, so that its controllers see the change; ``connect`` always connects.
    """
    url = remote_url()
    if url:
        from mnemos.remote import RemoteClient

        return RemoteClient(url)
    if connect or (publish and platform_address()):
        import mnemos

        return mnemos.connect(platform_address())
    return Client(load_settings())


def event_position(client: Any) -> int | None:
    """Where the platform's event stream is now: ``client.watch(after=…)`` from here misses nothing
    (take it before reading a state, then follow its changes). ``None`` when it cannot be read."""
    if hasattr(client, "position"):  # a RemoteClient: over /v1/events
        return client.position()  # type: ignore[no-any-return]
    import ray

    from mnemos.trace.events import bus

    try:
        return int(ray.get(bus().last.remote(), timeout=30))
    except Exception:  # noqa: BLE001 - without the bus a follower starts from now
        return None
