"""An adapter's JSON answer is charged by its ``usage`` only when that has token counts.

``"usage": {}`` (or ``null`` counts, or ``total_tokens`` alone), which some OpenAI-compatible
servers send, was read as 0 prompt and 0 completion tokens: the request cost nothing and no budget
saw it. It is now charged its reservation, as an answer without ``usage``; an embedding's usage
(no ``completion_tokens``) still counts as sent.

Real ``Gateway`` and ``Meter`` on a local ENGRAM, no Ray: the settled rows are read from the
governor before they are reported.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

PRICING = {"input": 1.0, "output": 2.0}


@pytest.fixture()
def gateway(tmp_path: Path) -> Any:
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._gateway import Gateway

    engram = Engram(str(tmp_path / "engram"))
    gw = Gateway(load_settings(engram={"uri": engram.uri}), engram, controller=None)
    up = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "up"},
          "spec": {"baseUrl": "http://127.0.0.1:9/v1", "models": ["remote-chat"], "pricing": {"*": PRICING}}}
    gw.apply({"version": 1, "models": {}, "adapters": {"up": up}})
    gw.meter.governor.flush_s = 3600.0  # keep the rows here: no ratelimit actor without Ray
    return gw


def _settled(gateway: Any, usage: Any) -> dict[str, Any]:
    """The row of one request with ``max_tokens: 40`` whose answer carries ``usage``."""
    from fastapi.responses import Response

    from mnemos.relay.openai_schema import ChatCompletionRequest

    body = ChatCompletionRequest.model_validate(
        {"model": "remote-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 40})

    async def run() -> Any:
        route = gateway.model("remote-chat", "generate")
        ticket = await gateway.meter.admit(None, body, route)
        answer = {"choices": [], **({} if usage is ... else {"usage": usage})}
        gateway.meter.watch(ticket, Response(json.dumps(answer).encode(), media_type="application/json"), route)
        return ticket

    ticket = asyncio.run(run())
    row = gateway.meter.governor._pending.pop()
    assert ticket.settled and not gateway.meter.governor._pending
    return {"prompt": row["prompt"], "completion": row["completion"], "reserved": ticket.reserved_tokens,
            "prompt_estimate": ticket.prompt_estimate}


@pytest.mark.parametrize("usage", [{}, {"prompt_tokens": None, "completion_tokens": None}, {"total_tokens": 9}, ...])
def test_a_usage_without_counts_is_charged_the_reservation(gateway: Any, usage: Any) -> None:
    row = _settled(gateway, usage)
    assert row["prompt"] > 0 and row["prompt"] + row["completion"] == row["reserved"], row


def test_counts_that_are_there_are_charged_as_sent(gateway: Any) -> None:
    row = _settled(gateway, {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10})
    assert (row["prompt"], row["completion"]) == (3, 7)
    row = _settled(gateway, {"prompt_tokens": 3, "total_tokens": 10})  # completion left out: total less prompt
    assert (row["prompt"], row["completion"]) == (3, 7)
    row = _settled(gateway, {"prompt_tokens": 4, "total_tokens": 4})  # an embedding's usage
    assert (row["prompt"], row["completion"]) == (4, 0)
    row = _settled(gateway, {"prompt_tokens": None, "completion_tokens": 3})  # a prompt counted 0: the estimate
    assert (row["prompt"], row["completion"]) == (row["prompt_estimate"], 3) and row["prompt"] > 0
