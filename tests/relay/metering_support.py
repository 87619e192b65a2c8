"""Helpers of the limits, budgets and usage tests (the ``governed`` gateway: auth on, two replicas)."""

from __future__ import annotations

import uuid
from typing import Any

from tests_support import model_doc

PRICING = {"input": 0.1, "output": 0.2}  # per 1k tokens


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def api_key(gw: Any, name: str, role: str = "developer", *, team: str = "", **limits: Any) -> str:
    """A new API key of ``name`` in the gateway's ENGRAM, with ``limits`` ({rpm, tpm, budget})."""
    from mnemos.soul.store import IdentityStore

    store = IdentityStore.from_settings(gw.settings, gw.client.engram)
    return store.create_api_key(name, role, team=team, limits=limits or None).secret


def priced_model(name: str, **spec: Any) -> dict[str, Any]:
    """An echo Model with ``PRICING`` (and any other spec fields)."""
    return model_doc(name, pricing=PRICING, **spec)


def spend(prompt: int, completion: int) -> float:
    return (prompt * PRICING["input"] + completion * PRICING["output"]) / 1000.0


def usage(gw: Any, key: str, **params: str) -> dict[str, Any]:
    import httpx

    response = httpx.get(f"{gw.url}/v1/usage", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


class InProcessActor:
    """The ``ratelimit`` actor's own class, called in this process (no Ray)."""

    def __init__(self) -> None:
        from mnemos.soul._ratelimit_actor import RateLimitService

        self.service = RateLimitService.__ray_actor_class__()

    def __getattr__(self, name: str) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(remote=getattr(self.service, name))


def metered_gateway(root: Any) -> Any:
    """A real ``Gateway`` (no controller) over an ENGRAM at ``root``, its ``Governor`` on an
    ``InProcessActor``; ``settled`` is for a test's record of what each request was charged."""
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._gateway import Gateway
    from mnemos.soul.limits import Governor

    engram = Engram(str(root))
    gw = Gateway(load_settings(engram={"uri": engram.uri}), engram, controller=None)
    gw.meter.governor = Governor(actor=InProcessActor())
    gw.settled = []
    return gw
