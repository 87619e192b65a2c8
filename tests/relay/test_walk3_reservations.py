"""A chat request's reservation counts what the model reads beside its messages' text.

The prompt was estimated from the messages' text alone: 40 KB of ``tools`` (about 10,000 prompt
tokens at the upstream) reserved 6 tokens, so a key with a budget of 2,000 tokens was admitted and
charged the upstream's whole count, and concurrent such requests passed the budget by as many times.
Tool definitions, earlier tool calls, a ``response_format`` schema and (an Adapter forwards the
client's JSON as sent) fields RELAY does not parse are now part of the estimate.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mnemos.errors import BudgetExceededError
from mnemos.soul._ratelimit_actor import RateLimitService

_TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "word " * 8000,
                                            "parameters": {"type": "object", "properties": {}}}}]  # fmt: skip


class InProcessActor:
    """The ``ratelimit`` actor's own class, called in this process."""

    def __init__(self) -> None:
        self.service = RateLimitService.__ray_actor_class__()

    def __getattr__(self, name: str) -> Any:
        return SimpleNamespace(remote=getattr(self.service, name))


@pytest.fixture()
def gateway(tmp_path: Path) -> Any:
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._gateway import Gateway
    from mnemos.soul.limits import Governor

    engram = Engram(str(tmp_path / "engram"))
    gw = Gateway(load_settings(engram={"uri": engram.uri}), engram, controller=None)
    up = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "up"},
          "spec": {"baseUrl": "http://127.0.0.1:9/v1", "models": ["remote-chat"]}}  # fmt: skip
    gw.apply({"version": 1, "models": {}, "adapters": {"up": up}})
    gw.meter.governor = Governor(actor=InProcessActor())
    return gw


def _admit(gateway: Any, doc: dict[str, Any], caller: Any = None) -> Any:
    from mnemos.relay.openai_schema import ChatCompletionRequest

    body = ChatCompletionRequest.model_validate({"model": "remote-chat", "max_tokens": 1, **doc})
    return asyncio.run(gateway.meter.admit(caller, body, gateway.model("remote-chat", "generate")))


def test_tools_tool_calls_schemas_and_forwarded_fields_are_reserved_as_prompt(gateway: Any) -> None:
    hi = [{"role": "user", "content": "hi"}]
    plain = _admit(gateway, {"messages": hi}).prompt_estimate
    size = len(json.dumps(_TOOLS))
    assert _admit(gateway, {"messages": hi, "tools": _TOOLS}).prompt_estimate >= plain + size // 2
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": "x" * 4000}}}
    assert _admit(gateway, {"messages": hi, "response_format": schema}).prompt_estimate >= plain + 2000
    arguments = json.dumps({"q": "y" * 4000})
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": arguments}}
    answered = {"role": "tool", "tool_call_id": "c1", "content": "ok"}
    history = [*hi, {"role": "assistant", "tool_calls": [call]}, answered]
    assert _admit(gateway, {"messages": history}).prompt_estimate >= plain + 2000
    legacy = [{"name": "lookup", "description": "z" * 4000, "parameters": {"type": "object"}}]  # forwarded as sent
    assert _admit(gateway, {"messages": hi, "functions": legacy}).prompt_estimate >= plain + 2000
    assert _admit(gateway, {"messages": hi}).prompt_estimate == plain  # nothing beside the text: as before


def test_a_small_token_budget_refuses_a_request_with_40kb_of_tools(gateway: Any) -> None:
    from mnemos.genome.metering import UsageLimits

    budget = UsageLimits.model_validate({"budget": {"tokens": 2000, "window": "1d"}})
    caller = SimpleNamespace(subject="tb", team="", limits_key="k-tb", kind="apikey", credential_id="k-tb",
                             limits=budget)  # fmt: skip
    hi = [{"role": "user", "content": "hi"}]
    with pytest.raises(BudgetExceededError) as refused:
        _admit(gateway, {"messages": hi, "tools": _TOOLS}, caller)
    assert refused.value.param == "key.budget" and "more than the whole budget" in refused.value.message
    assert _admit(gateway, {"messages": hi}, caller).budget_reserved  # without the tools it fits
