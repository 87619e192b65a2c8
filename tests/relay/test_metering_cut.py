"""A request whose answer carries no token counts is still charged: a stream cut short (the client
went away, the engine failed) by the content events it sent, an upstream that never sends ``usage``
by its events (streams) or its whole reservation (JSON). Cutting a stream before its usage chunk
used to settle as 0 tokens and 0 spend. And an answer is priced by the adapter that gave it (a
fallback's prices, not the first adapter's).

Real ``Gateway`` and ``Meter`` on a local ENGRAM, no Ray: the settled rows are read from the
governor before they are reported.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

PRICING = {"input": 1.0, "output": 2.0}


def _adapter(name: str, models: list[str], pricing: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": name},
            "spec": {"baseUrl": "http://127.0.0.1:9/v1", "models": models, "pricing": pricing, **spec}}


@pytest.fixture()
def gateway(tmp_path: Path) -> Any:
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._gateway import Gateway

    engram = Engram(str(tmp_path / "engram"))
    gw = Gateway(load_settings(engram={"uri": engram.uri}), engram, controller=None)
    up = _adapter("up", ["remote-chat"], {"remote-chat": PRICING})
    gw.apply({"version": 1, "models": {}, "adapters": {"up": up}})
    gw.meter.governor.flush_s = 3600.0  # keep the rows here: no ratelimit actor without Ray
    return gw


def _body(**extra: Any) -> Any:
    from mnemos.relay.openai_schema import ChatCompletionRequest

    return ChatCompletionRequest.model_validate(
        {"model": "remote-chat", "messages": [{"role": "user", "content": "hello there"}], **extra})


def _event(text: str) -> bytes:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def _upstream(events: int, usage: dict[str, int] | None) -> AsyncIterator[bytes]:
    for i in range(events):
        yield _event(f"w{i}")
    if usage is not None:
        yield b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def _serve(response: Any, read: int | None) -> list[bytes]:
    """Send ``response`` as the ASGI server would, to a client that takes ``read`` body chunks (all:
    None; 0: gone before the response's start) and then goes away. Returns the chunks it took."""
    taken: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if read is not None and (message["type"] == "http.response.start" and read == 0 or len(taken) >= read):
            raise OSError("the client went away")
        if message["type"] == "http.response.body" and message.get("body"):
            taken.append(message["body"])

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def run() -> None:
        from starlette.requests import ClientDisconnect

        try:
            await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
        except ClientDisconnect:
            assert read is not None

    asyncio.run(run())
    return taken


def _stream_through(gateway: Any, body: Any, upstream: AsyncIterator[bytes], read: int | None,
                    on_close: Any = None) -> tuple[Any, dict]:  # fmt: skip
    """Admit ``body``, pass ``upstream`` through the meter as an adapter's stream, serve it to a
    client that reads ``read`` chunks (all: None)."""
    from mnemos.relay._responses import ClosingStream

    async def admit() -> Any:
        route = gateway.model("remote-chat", "generate")
        ticket = await gateway.meter.admit(None, body, route)
        return ticket, gateway.meter.watch(ticket, ClosingStream(upstream, on_close=on_close), route)

    ticket, watched = asyncio.run(admit())
    taken = _serve(watched, read)
    assert read is None or len(taken) == read
    rows = gateway.meter.governor._pending
    assert ticket.settled and len(rows) == 1, rows
    return ticket, rows[0]


def test_a_stream_cut_before_its_usage_is_charged_by_the_events_sent(gateway: Any) -> None:
    ticket, row = _stream_through(gateway, _body(stream=True, max_tokens=100),
                                  _upstream(10, {"prompt_tokens": 2, "completion_tokens": 10}), read=4)  # fmt: skip
    assert ticket.prompt_estimate > 0  # the client took 4 events; the 5th was generated and its send failed
    assert (row["prompt"], row["completion"]) == (ticket.prompt_estimate, 5)
    assert row["spend"] == pytest.approx((ticket.prompt_estimate * 1.0 + 5 * 2.0) / 1000)


def test_a_client_gone_before_the_first_chunk_still_settles_and_drops_the_upstream(gateway: Any) -> None:
    """The body generator never started used to be never closed: no settle (the reservation held
    for 15 minutes), and the upstream connection left open."""
    closed: list[bool] = []
    ticket, row = _stream_through(gateway, _body(stream=True, max_tokens=100), _upstream(10, None), read=0,
                                  on_close=lambda: closed.append(True))  # fmt: skip
    assert (row["prompt"], row["completion"]) == (ticket.prompt_estimate, 0) and closed == [True]


def test_a_whole_stream_is_charged_its_usage(gateway: Any) -> None:
    _, row = _stream_through(gateway, _body(stream=True, max_tokens=100),
                             _upstream(10, {"prompt_tokens": 2, "completion_tokens": 10}), read=None)  # fmt: skip
    assert (row["prompt"], row["completion"]) == (2, 10)


def test_an_upstream_stream_without_usage_is_charged_by_its_events(gateway: Any) -> None:
    ticket, row = _stream_through(gateway, _body(stream=True, max_tokens=100), _upstream(3, None), read=None)
    assert (row["prompt"], row["completion"]) == (ticket.prompt_estimate, 3)


def test_a_json_answer_without_usage_is_charged_its_reservation(gateway: Any) -> None:
    from fastapi.responses import Response

    async def run(content: dict[str, Any]) -> Any:
        route = gateway.model("remote-chat", "generate")
        ticket = await gateway.meter.admit(None, _body(max_tokens=50), route)
        gateway.meter.watch(ticket, Response(json.dumps(content).encode(), media_type="application/json"), route)
        return ticket

    counted = asyncio.run(run({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 7}}))
    uncounted = asyncio.run(run({"choices": []}))
    rows = gateway.meter.governor._pending
    assert [(r["prompt"], r["completion"]) for r in rows] == [
        (3, 7), (uncounted.prompt_estimate, uncounted.reserved_tokens - uncounted.prompt_estimate)]
    assert uncounted.reserved_tokens - uncounted.prompt_estimate == 50 and counted.settled


def test_engine_streams_count_their_content_events() -> None:
    """The SSE a NEURON model's chunks become counts what it sent, for a stream cut short."""
    from mnemos.neuron import GenerationChunk
    from mnemos.relay import _responses as out

    async def chunks() -> AsyncIterator[GenerationChunk]:
        for word in ("a", "b", "c", "d"):
            yield GenerationChunk(text=word)
        yield GenerationChunk(text="", finish_reason="stop", prompt_tokens=2, completion_tokens=4)

    async def run(read: int | None) -> dict[str, Any]:
        done: dict[str, Any] = {}
        events = out.chat_events(chunks(), None, "chatcmpl-1", "m", False, done)
        count = 0
        async for _ in events:
            count += 1
            if read is not None and count >= read:
                break
        await events.aclose()
        return done

    cut = asyncio.run(run(3))  # the role chunk and two words
    assert cut == {"events": 2}
    whole = asyncio.run(run(None))
    assert whole == {"events": 4, "prompt_tokens": 2, "completion_tokens": 4, "complete": True}


def test_a_fallback_adapters_answer_is_priced_at_its_prices(gateway: Any) -> None:
    from fastapi.responses import Response

    gateway.apply({"version": 2, "models": {}, "adapters": {
        "up": _adapter("up", ["remote-chat"], {"remote-chat": PRICING}, fallback="back"),
        "back": _adapter("back", ["other"], {"*": {"input": 10.0, "output": 20.0}})}})

    async def run(adapter: str) -> Any:
        route = gateway.model("remote-chat", "generate")
        ticket = await gateway.meter.admit(None, _body(max_tokens=50), route)
        answer = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 7}}
        gateway.meter.watch(ticket, Response(json.dumps(answer).encode(), media_type="application/json"), route,
                            adapter=adapter)  # fmt: skip
        return ticket

    asyncio.run(run("up"))
    asyncio.run(run("back"))
    first, fallback = gateway.meter.governor._pending
    assert first["spend"] == pytest.approx((3 * 1.0 + 7 * 2.0) / 1000)
    assert fallback["spend"] == pytest.approx((3 * 10.0 + 7 * 20.0) / 1000)


def test_a_closing_stream_runs_its_generators_cleanup_however_the_client_leaves() -> None:
    """What the engine, vLLM and adapter streams rely on: cancel the model's stream, settle, record."""
    from mnemos.relay._responses import ClosingStream

    ended: list[int] = []

    def events() -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            try:
                yield b""
                for i in range(3):
                    yield b"data: %d\n\n" % i
            finally:
                ended.append(len(ended))

        return gen()

    assert _serve(ClosingStream(events()), read=0) == [] and ended == [0]  # gone before the start
    assert _serve(ClosingStream(events()), read=1) == [b"data: 0\n\n"] and ended == [0, 1]  # mid-stream
    assert len(_serve(ClosingStream(events()), read=None)) == 3 and ended == [0, 1, 2]

    async def unprimed() -> AsyncIterator[bytes]:
        yield b"data: 0\n\n"

    with pytest.raises(RuntimeError, match='yield b""'):
        _serve(ClosingStream(unprimed()), read=None)
