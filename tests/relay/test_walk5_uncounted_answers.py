"""An Adapter's answer that counts 0 tokens for a prompt and a non-empty answer is charged the
gateway's own estimate, not nothing.

An upstream answering ``usage: {prompt_tokens: 0, completion_tokens: 0}`` (JSON, or the usage chunk
of a stream) with 4 KB of text cost nothing: a key with a token budget was admitted again and again,
past its budget (and its tokens-per-minute limit). Such counts are now the prompt's estimate (as
reserved) and the returned text's (4 bytes a token); an honest count
is charged as it is.

Real ``Gateway``, ``Meter``, ``AdapterRouter`` (aiohttp) and the ``ratelimit`` actor's class in
this process, against a lying OpenAI-compatible upstream on 127.0.0.1. No Ray.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from metering_support import metered_gateway

from mnemos.errors import BudgetExceededError

TEXT = "x" * 8000  # 2,000 tokens at 4 bytes a token
BUDGET = 5000  # tokens: two such answers fit, a third does not


def _chunk(delta: dict[str, Any] | None, usage: dict[str, int] | None = None) -> bytes:
    chunk = {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}]}  # fmt: skip
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _upstream() -> web.Application:
    """Answers every request with ``TEXT`` and the usage its ``user`` names (``zero``: all 0; ``none``:
    no usage; ``honest``: 3 and 7), as JSON or a stream; embeddings with a prompt count of 0."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        usage = {"zero": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, "none": None,
                 "honest": {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}}[body["user"]]  # fmt: skip
        if not body.get("stream"):
            message = {"role": "assistant", "content": TEXT[:2000],
                       "tool_calls": [{"id": "c", "type": "function",
                                       "function": {"name": "f", "arguments": TEXT[2001:]}}]}  # fmt: skip
            answer = {"id": "up-1", "object": "chat.completion", "created": 0, "model": "m",
                      "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip
            return web.json_response(answer if usage is None else {**answer, "usage": usage})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for part in (TEXT[:1000], TEXT[1000:]):  # two events: counting events alone charged 2 tokens
            await response.write(_chunk({"content": part}))
        if usage is not None:
            await response.write(_chunk(None, usage))
        await response.write(b"data: [DONE]\n\n")
        return response

    async def embeddings(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "model": "m", "usage": {"prompt_tokens": 0, "total_tokens": 0},
                                  "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}]})  # fmt: skip

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    return app


@pytest.fixture()
def gateway(tmp_path: Path) -> Any:
    return metered_gateway(tmp_path / "engram")


def _caller(name: str) -> Any:
    from mnemos.genome.metering import UsageLimits

    budget = UsageLimits.model_validate({"budget": {"tokens": BUDGET, "window": "1d"}})
    return SimpleNamespace(subject=name, team="", limits_key=f"k-{name}", kind="apikey", credential_id=f"k-{name}",
                           limits=budget)  # fmt: skip


async def _serve_upstream(gateway: Any) -> web.AppRunner:
    runner = web.AppRunner(_upstream())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    up = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "liar"},
          "spec": {"baseUrl": f"http://127.0.0.1:{port}/v1", "models": ["remote-chat", "remote-embed"]}}  # fmt: skip
    gateway.apply({"version": 1, "models": {}, "adapters": {"liar": up}})
    return runner


async def _ask(gateway: Any, caller: Any, doc: dict[str, Any], path: str = "/v1/chat/completions") -> Any:
    """One request as the handler sends it: admitted, forwarded, settled (a stream read to its end),
    then reported to the budget; its row is kept in ``gateway.settled``."""
    from mnemos.relay.openai_schema import ChatCompletionRequest, EmbeddingRequest

    schema = EmbeddingRequest if path.endswith("embeddings") else ChatCompletionRequest
    body = schema.model_validate(doc)
    route = gateway.model(body.model, "generate" if schema is ChatCompletionRequest else "embed")
    ticket = await gateway.meter.admit(caller, body, route)
    stream = bool(doc.get("stream"))
    response, adapter = await gateway.adapters.forward(body.model, path, gateway.meter.upstream_body(body, doc, ticket),
                                                       stream=stream)  # fmt: skip
    response = gateway.meter.watch(ticket, response, route, adapter=adapter)
    if stream:
        async for _ in response.body_iterator:
            pass
    governor = gateway.meter.governor
    gateway.settled += [(r["prompt"], r["completion"]) for r in governor._pending if not r.get("refused")]
    await governor.flush()
    return ticket


def _run(gateway: Any, user: str, *, stream: bool = False, requests: int = 4) -> tuple[list[Any], Exception | None]:
    """``requests`` chats by one budgeted key: the tickets settled, and the error that refused one."""
    caller = _caller(f"{user}-{stream}")
    doc = {"model": "remote-chat", "user": user, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}

    async def run() -> tuple[list[Any], Exception | None]:
        runner = await _serve_upstream(gateway)
        tickets: list[Any] = []
        try:
            for _ in range(requests):
                tickets.append(await _ask(gateway, caller, doc))
        except BudgetExceededError as exc:
            return tickets, exc
        finally:
            await gateway.adapters.aclose()
            await runner.cleanup()
        return tickets, None

    return asyncio.run(run())


def _settled(gateway: Any) -> list[tuple[int, int]]:
    return gateway.settled  # type: ignore[no-any-return]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_answer_that_counts_zero_tokens_is_charged_its_estimate_and_a_budget_holds(
    gateway: Any, stream: bool
) -> None:
    tickets, refused = _run(gateway, "zero", stream=stream)
    assert isinstance(refused, BudgetExceededError) and refused.param == "key.budget", refused
    assert len(tickets) == 2  # 2 x (prompt + 2,000) fit 5,000; the third is refused
    for ticket, (prompt, completion) in zip(tickets, _settled(gateway), strict=True):
        assert prompt == ticket.prompt_estimate > 0 and completion == 2000


def test_a_json_answer_without_usage_is_charged_its_text_when_past_its_reservation(gateway: Any) -> None:
    tickets, _ = _run(gateway, "none", requests=1)
    assert _settled(gateway) == [(tickets[0].prompt_estimate, 2000)]  # more than the 1,024 reserved


def test_honest_counts_are_charged_as_counted(gateway: Any) -> None:
    _run(gateway, "honest", requests=2)
    _run(gateway, "honest", stream=True, requests=2)
    assert _settled(gateway) == [(3, 7)] * 4


def test_an_embedding_counted_as_zero_is_charged_its_prompt_estimate(gateway: Any) -> None:
    async def run() -> Any:
        runner = await _serve_upstream(gateway)
        try:
            return await _ask(gateway, _caller("embed"), {"model": "remote-embed", "input": "y" * 600},
                              "/v1/embeddings")  # fmt: skip
        finally:
            await gateway.adapters.aclose()
            await runner.cleanup()

    ticket = asyncio.run(run())
    assert ticket.prompt_estimate >= 300 and _settled(gateway) == [(ticket.prompt_estimate, 0)]
