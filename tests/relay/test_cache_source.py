"""The response cache keys an answer by what gave it and whose it is, not only by the request.

Keyed on the request alone, an Adapter whose ``baseUrl`` (or upstream model, or credential) changed
kept serving the old upstream's answers for the cache's whole TTL, and a Model given new weights
or a new runtime, or a Model that took an Adapter's name, its predecessor's. A change of price,
limits or cache alone keeps the answers (the same upstream and weights answer).

And one cache served every caller: a developer was handed an answer computed for another team's
principal, and ``x-mnemos-cache: hit`` told it that someone had asked exactly that. Answers are
now kept per team (members share them, as they share spaces), and per principal without a team.

Real ``Gateway`` and ``Meter`` on a local ENGRAM, no Ray.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

CACHE = {"ttl": "10m"}


def _adapter(base: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "up"},
            "spec": {"baseUrl": base, "models": ["remote-chat"], "cache": CACHE, **spec}}  # fmt: skip


@pytest.fixture()
def gateway(tmp_path: Path) -> Any:
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._gateway import Gateway

    engram = Engram(str(tmp_path / "engram"))
    gw = Gateway(load_settings(engram={"uri": engram.uri}), engram, controller=None)
    gw.apply({"version": 1, "models": {}, "adapters": {"up": _adapter("http://127.0.0.1:9/v1")}})
    gw.meter.governor.flush_s = 3600.0  # no ratelimit actor without Ray
    return gw


def _body() -> Any:
    from mnemos.relay.openai_schema import ChatCompletionRequest

    return ChatCompletionRequest.model_validate(
        {"model": "remote-chat", "messages": [{"role": "user", "content": "a common question"}], "temperature": 0})


def _lookup(gateway: Any, route: Any, store: bytes | None = None, caller: Any = None) -> bytes | None:
    """The cached answer for ``_body()`` on ``route`` asked by ``caller`` (after storing ``store``)."""
    from fastapi.responses import Response

    async def run() -> bytes | None:
        body = _body()
        ticket = await gateway.meter.admit(caller, body, route)
        sent = body.model_dump(exclude_none=True) if route.serving == "adapter" else None
        key, hit = gateway.meter.cached("chat", body, route, ticket, sent)
        if store is not None:
            gateway.meter.store(key, route, Response(store, media_type="application/json"), 1, 1)
        return None if hit is None else hit.content

    return asyncio.run(run())


def test_an_adapters_new_upstream_is_not_answered_from_the_old_ones_cache(gateway: Any) -> None:
    route = gateway.model("remote-chat", "generate")
    _lookup(gateway, route, store=b'{"from": "old upstream"}')
    assert _lookup(gateway, route) == b'{"from": "old upstream"}'
    priced = _adapter("http://127.0.0.1:9/v1", pricing={"*": {"input": 1.0, "output": 2.0}})
    gateway.apply({"version": 2, "models": {}, "adapters": {"up": priced}})
    assert _lookup(gateway, route) == b'{"from": "old upstream"}'  # a new price: the same upstream answers
    for version, changed in enumerate((_adapter("http://127.0.0.1:10/v1"),
                                       _adapter("http://127.0.0.1:9/v1", upstreamModel="other-model")), 3):
        gateway.apply({"version": version, "models": {}, "adapters": {"up": changed}})
        assert _lookup(gateway, gateway.model("remote-chat", "generate")) is None


def test_a_models_new_weights_or_runtime_are_not_answered_from_the_old_cache(gateway: Any) -> None:
    from mnemos.relay._routes import ModelRoute

    def route(fingerprint: str, digest: str) -> ModelRoute:
        return ModelRoute("remote-chat", {"name": "remote-chat", "status": "ready", "generation": 1,
                                          "fingerprint": fingerprint, "digest": digest, "cache": CACHE})  # fmt: skip

    _lookup(gateway, route("f1", "d1"), store=b'{"from": "old weights"}')
    assert _lookup(gateway, route("f1", "d1")) == b'{"from": "old weights"}'
    assert _lookup(gateway, route("f1", "d2")) is None
    assert _lookup(gateway, route("f2", "d1")) is None
    _lookup(gateway, gateway.model("remote-chat", "generate"), store=b'{"from": "the adapter"}')
    assert _lookup(gateway, route("f1", "d1")) == b'{"from": "old weights"}'  # a Model of that name: its own


def test_answers_are_kept_per_team_and_per_principal_without_one(gateway: Any) -> None:
    from types import SimpleNamespace

    def caller(subject: str, team: str = "") -> Any:
        return SimpleNamespace(subject=subject, team=team, kind="apikey")

    route = gateway.model("remote-chat", "generate")
    _lookup(gateway, route, store=b'{"for": "red"}', caller=caller("alice", "red"))
    assert _lookup(gateway, route, caller=caller("bob", "red")) == b'{"for": "red"}'  # a team shares its answers
    assert _lookup(gateway, route, caller=caller("carol", "blue")) is None
    assert _lookup(gateway, route, caller=caller("dave")) is None
    _lookup(gateway, route, store=b'{"for": "dave"}', caller=caller("dave"))
    assert _lookup(gateway, route, caller=caller("dave")) == b'{"for": "dave"}'
    assert _lookup(gateway, route, caller=caller("erin")) is None


def test_an_answer_whose_cache_went_while_it_was_computed_is_answered_not_stored(gateway: Any) -> None:
    """The Adapter lost its ``cache`` (or was deleted) while the upstream answered: storing the answer
    failed (no TTL to read) and the client got a 500 for an answer it had been charged for."""
    from fastapi.responses import Response

    async def run() -> None:
        body, route = _body(), gateway.model("remote-chat", "generate")
        ticket = await gateway.meter.admit(None, body, route)
        key, _ = gateway.meter.cached("chat", body, route, ticket, body.model_dump(exclude_none=True))
        uncached = _adapter("http://127.0.0.1:9/v1")
        del uncached["spec"]["cache"]
        for version, adapters in enumerate(({"up": uncached}, {}), 2):
            gateway.apply({"version": version, "models": {}, "adapters": adapters})
            gateway.meter.store(key, route, Response(b"{}", media_type="application/json"), 1, 1)

    asyncio.run(run())
    assert not gateway.meter.cache._entries


def test_an_answer_a_fallback_gave_is_not_cached(gateway: Any) -> None:
    """A fallback's answer was cached under the request's key and served for the TTL after the first
    Adapter answered again: a stopgap's answer standing for the one asked."""
    from fastapi.responses import JSONResponse

    async def run() -> None:
        body, route = _body(), gateway.model("remote-chat", "generate")
        ticket = await gateway.meter.admit(None, body, route)
        key, _ = gateway.meter.cached("chat", body, route, ticket, body.model_dump(exclude_none=True))
        answer = JSONResponse({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        gateway.meter.watch(ticket, answer, route, key, adapter="spare")
        assert not gateway.meter.cache._entries
        ticket = await gateway.meter.admit(None, body, route)
        gateway.meter.watch(ticket, answer, route, key, adapter=route.adapter)  # the first's own: kept
        assert len(gateway.meter.cache._entries) == 1

    asyncio.run(run())
