"""First-run wiring of SOUL: the bootstrap admin API key, printed once by ``mnemos up``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mnemos.engram import Engram
from mnemos.soul.store import IdentityStore

__all__ = ["BOOTSTRAP_MARKER", "BOOTSTRAP_NAME", "bootstrap_admin", "bootstrap_hook"]

BOOTSTRAP_MARKER = "soul/bootstrap.json"
BOOTSTRAP_NAME = "bootstrap-admin"


def bootstrap_admin(engram: Engram, settings: Any = None) -> str | None:
    """Create the bootstrap admin API key on first run and return it (only that once).

    Only its hash is stored; the marker ``soul/bootstrap.json`` (the key's id, no secret) makes
    every later call return ``None``. Also makes sure a signing key exists.
    """
    from mnemos.config import load_settings

    settings = settings or load_settings()
    store = IdentityStore.from_settings(settings, engram)
    store.keyring.rotate()
    if engram.exists(BOOTSTRAP_MARKER):
        return None
    created = store.create_api_key(BOOTSTRAP_NAME, "admin", actor="local:bootstrap")  # the platform: admins see it
    engram.write_json(BOOTSTRAP_MARKER, {"id": created.id, "name": BOOTSTRAP_NAME, "created_at": time.time()})
    return created.secret


def bootstrap_hook(client: Any, echo: Callable[[str], object] = print) -> None:
    """``mnemos up`` hook: print the bootstrap admin credential the first time, nothing after.

    Args:
        client: anything with ``engram`` and ``settings`` (the session ``mnemos up`` opened).
        echo: how to print a line (the CLI passes its console's ``print``).
    """
    secret = bootstrap_admin(client.engram, client.settings)
    if secret is None:
        echo("soul: up (bootstrap admin key already issued; `mnemos token create --name NAME --role ROLE --api-key` "
             "makes more)")
        return
    echo("soul: bootstrap admin API key (shown once; only its hash is stored):")
    echo(f"  {secret}")
    url = f"http://{client.settings.relay.host}:{client.settings.relay.port}"
    # `--api-key -` reads it from stdin: a key typed after the flag stays in the shell's history and `ps`
    echo(f"  use it: mnemos login {url} --api-key -   (paste it)   or   export MNEMOS_API_KEY=<key>")
