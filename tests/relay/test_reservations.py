"""What a request reserves before it starts, and limit values the arithmetic cannot hold.

- ``max_tokens`` of 10**400 (JSON takes it, and so did the schema) made the reservation's price an
  ``OverflowError``: a 500 for every caller with a budget. So did a key's ``rpm`` of 10**400 for
  every request of that key, and a price of 1e308 made an infinite spend. Limits and prices now
  have ceilings far above any real figure (422 naming the field), and a reservation is capped.
- A request whose ceiling alone passes the budget (or what is left of it) was told that the budget
  "is spent" with nothing spent, and to wait for the window's reset, which does not help: the
  message now says so and to ask for fewer ``max_tokens``.
- An Adapter forwards the client's JSON as sent: with ``max_completion_tokens: 1`` beside
  ``max_tokens: 100000``, an upstream that reads ``max_tokens`` made 100000 tokens against a
  reservation of 1. The larger of the two is reserved.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mnemos.errors import BudgetExceededError, ValidationError
from mnemos.soul._ratelimit_actor import RateLimitService


class InProcessActor:
    """The ``ratelimit`` actor's own class, called in this process (``handle.reserve.remote(...)``
    returns an awaitable, as a Ray actor handle's does)."""

    def __init__(self) -> None:
        self.service = RateLimitService.__ray_actor_class__()

    def __getattr__(self, name: str) -> Any:
        return SimpleNamespace(remote=getattr(self.service, name))


@pytest.mark.parametrize("doc, param", [({"rpm": 10**400}, "limits.rpm"), ({"tpm": 10**20}, "limits.tpm"),
                                        ({"budget": {"tokens": 10**400}}, "limits.budget.tokens")])  # fmt: skip
def test_limits_beyond_any_real_figure_are_refused_naming_the_field(doc: dict[str, Any], param: str) -> None:
    from mnemos.soul.limits import check_key_limits

    with pytest.raises(ValidationError) as caught:
        check_key_limits(doc)
    assert caught.value.param == param
    assert check_key_limits({"rpm": 10**9, "tpm": 10**12, "budget": {"tokens": 10**15}})["rpm"] == 10**9


def test_a_price_beyond_any_real_figure_is_refused() -> None:
    from pydantic import ValidationError as PydanticValidationError

    from mnemos.genome.metering import Pricing

    with pytest.raises(PydanticValidationError, match="input"):
        Pricing.model_validate({"input": 1e300})
    assert Pricing.model_validate({"input": 1e6, "output": 2e6}).cost(1000, 1000) == 3e6


def test_a_huge_max_tokens_is_refused_by_the_budget_not_a_500() -> None:
    from mnemos.genome.metering import Pricing, UsageLimits
    from mnemos.soul.limits import Governor

    governor = Governor(actor=InProcessActor())
    caller = SimpleNamespace(subject="spender", team="", limits_key="k1", kind="apikey",
                             limits=UsageLimits.model_validate({"budget": {"amount": 5}}))  # fmt: skip

    async def admit(tokens: int) -> Any:
        return await governor.admit(caller, "remote-chat", reserve_tokens=tokens, pricing=Pricing(input=1, output=2))

    with pytest.raises(BudgetExceededError) as caught:
        asyncio.run(admit(10**400))
    assert caught.value.param == "key.budget"
    assert "more than the whole budget: ask for fewer max_tokens" in caught.value.message
    assert asyncio.run(admit(2000)).budget_reserved  # 4 of the 5 reserved
    with pytest.raises(BudgetExceededError) as caught:
        asyncio.run(admit(1000))
    assert "(4 used or reserved; this request reserves 2, more than the 1 left: ask for fewer max_tokens, or wait)" \
        in caught.value.message  # fmt: skip


@pytest.fixture()
def gateway(tmp_path: Path) -> Any:
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._gateway import Gateway

    engram = Engram(str(tmp_path / "engram"))
    gw = Gateway(load_settings(engram={"uri": engram.uri}), engram, controller=None)
    up = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "up"},
          "spec": {"baseUrl": "http://127.0.0.1:9/v1", "models": ["remote-chat"]}}
    gw.apply({"version": 1, "models": {}, "adapters": {"up": up}})
    return gw


def _reserved(gateway: Any, doc: dict[str, Any], endpoint: str = "chat") -> int:
    from mnemos.relay.openai_schema import ChatCompletionRequest, CompletionRequest

    kind = ChatCompletionRequest if endpoint == "chat" else CompletionRequest
    text = {"messages": [{"role": "user", "content": "hi"}]} if endpoint == "chat" else {"prompt": "hi"}
    body = kind.model_validate({"model": "remote-chat", **text, **doc})

    async def run() -> int:
        ticket = await gateway.meter.admit(None, body, gateway.model("remote-chat", "generate"))
        return ticket.reserved_tokens - ticket.prompt_estimate

    return asyncio.run(run())


def test_an_adapter_request_reserves_the_most_its_upstream_may_make(gateway: Any) -> None:
    assert _reserved(gateway, {"max_tokens": 100}) == 100
    assert _reserved(gateway, {"max_completion_tokens": 1, "max_tokens": 100000}) == 100000
    assert _reserved(gateway, {"max_completion_tokens": 500, "max_tokens": 20}) == 500
    assert _reserved(gateway, {"max_tokens": 100, "n": 2}) == 200
    assert _reserved(gateway, {"max_tokens": 40}, "completions") == 40


def test_a_metered_adapter_request_without_a_ceiling_is_sent_with_its_reservation(gateway: Any) -> None:
    """An Adapter request naming no ``max_tokens`` reserved 1024 completion tokens while the upstream,
    left to its default (the rest of the context), could make far more: with a budget, overspend was
    bounded by nothing. Under a budget or a tokens-per-minute limit the reservation is sent as the
    ceiling; a request unmetered, or that names its own, goes as it came."""
    from mnemos.genome.metering import UsageLimits
    from mnemos.relay.openai_schema import ChatCompletionRequest, CompletionRequest
    from mnemos.soul.limits import Governor

    gateway.meter.governor = Governor(actor=InProcessActor())
    route = gateway.model("remote-chat", "generate")

    def sent(limits: dict[str, Any] | None, doc: dict[str, Any], kind: Any = ChatCompletionRequest) -> dict[str, Any]:
        caller = SimpleNamespace(subject="capped", team="", limits_key="k", kind="apikey", credential_id="k",
                                 limits=None if limits is None else UsageLimits.model_validate(limits))  # fmt: skip
        text = {"messages": [{"role": "user", "content": "hi"}]} if kind is ChatCompletionRequest else {"prompt": "hi"}
        raw = {"model": "remote-chat", **text, **doc}

        async def run() -> dict[str, Any]:
            body = kind.model_validate(raw)
            ticket = await gateway.meter.admit(caller, body, route)
            return gateway.meter.upstream_body(body, raw, ticket)  # type: ignore[no-any-return]

        return asyncio.run(run())

    budget = {"budget": {"tokens": 10**6}}
    assert sent(budget, {})["max_completion_tokens"] == 1024
    assert sent(budget, {"n": 2})["max_completion_tokens"] == 1024  # per choice
    assert sent({"tpm": 10**6}, {}, CompletionRequest)["max_tokens"] == 16  # (OpenAI's default there; only max_tokens)
    assert "max_completion_tokens" not in sent(budget, {"max_tokens": 50})  # its own ceiling stands
    assert "max_completion_tokens" not in sent(None, {}) and "max_tokens" not in sent(None, {})  # nothing counts it
