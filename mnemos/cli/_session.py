"""How CLI commands reach the platform."""

from __future__ import annotations

import os

from mnemos.client import Client
from mnemos.config import load_settings


def platform_address() -> str | None:
    """The Ray address of a running platform, or ``None`` when none is up."""
    from mnemos.cradle import read_cluster

    settings = load_settings()
    info = read_cluster()
    return settings.ray.address or os.environ.get("MNEMOS_RAY_ADDRESS") or (info["address"] if info else None)


def open_client(*, publish: bool = False, connect: bool = False) -> Client:
    """A client for a command.

    Reads need no cluster: they go to ENGRAM directly. Writes (``publish``) connect when a
    platform is up, so that its controllers see the change; ``connect`` always connects.
    """
    if connect or (publish and platform_address()):
        import mnemos

        return mnemos.connect(platform_address())
    return Client(load_settings())
