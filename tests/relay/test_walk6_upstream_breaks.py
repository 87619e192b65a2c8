"""An Adapter's upstream that misbehaves after its headers: the client gets an OpenAI-shaped error
(or a clean end), the request is settled once, and every wait is bounded by the route's timeout.

- A stream the upstream breaks off (closes the connection mid-stream, or sends no chunk within the
  route's timeout) raised out of the answer: the client's chunked body was cut without a word and
  the gateway logged a traceback. It now ends with an ``upstream_error`` event and ``[DONE]``.
- A JSON answer whose body the upstream drips (a byte now and then, each within the timeout) held
  the request as long as the upstream liked. Its body must now arrive within the route's timeout.

Real ``Gateway``, ``Meter``, ``AdapterRouter`` (aiohttp) and the ``ratelimit`` actor's class in
this process, against a raw asyncio HTTP server on 127.0.0.1. No Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from metering_support import InProcessActor

from mnemos.errors import UpstreamError

SECRET = "sk-walk6-upstream-secret"
HUGE = 3 << 20  # bytes of text in one event: more than the meter waits for (1 MiB)
STATE: dict[str, Any] = {}  # between the upstream and the client, in one event loop


def _event(text: str) -> bytes:
    chunk = {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}  # fmt: skip
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _misbehave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers as the request's ``user`` says: ``cut`` (one event, then the connection closed),
    ``cut-mid-event`` (half an event, then closed), ``silent`` (one event, then nothing), ``drip``
    (a JSON answer's headers, then its body a byte every 0.2 s: 6 s in all)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))  # fmt: skip
    user = json.loads(await reader.readexactly(length))["user"]
    try:
        if user == "huge":  # one event of 3 MiB, not ended until the client read most of it (or 10 s went by)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            event = _event("x" * HUGE)
            for at in range(0, len(event) - 10, 1 << 16):
                writer.write(_chunked(event[at: min(at + (1 << 16), len(event) - 10)]))
                await writer.drain()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(STATE["read"].wait(), 10)
            STATE["early"] = STATE["read"].is_set()
            writer.write(_chunked(event[-10:]) + _chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
            return
        if user == "drip":
            body = b'{"id": "up-1", "object": "chat.completion", "choices": []}'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body))
            for byte in body[:30]:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)
            writer.write(body[30:])
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(_chunked(_event("hello")))
        if user == "cut-mid-event":
            writer.write(_chunked(_event("world")[:20]))
        await writer.drain()
        if user == "silent":
            await asyncio.sleep(30)
    finally:
        writer.close()


@pytest.fixture()
def gateway(tmp_path: Path) -> Any:
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._gateway import Gateway
    from mnemos.soul.limits import Governor
    from mnemos.soul.secrets import secret_store

    engram = Engram(str(tmp_path / "engram"))
    settings = load_settings(engram={"uri": engram.uri})
    secret_store("file", settings).set("walk6", "KEY", SECRET)
    gw = Gateway(settings, engram, controller=None)
    gw.meter.governor = Governor(actor=InProcessActor())
    return gw


def _caller() -> Any:
    from mnemos.genome.metering import UsageLimits

    budget = UsageLimits.model_validate({"budget": {"tokens": 100000, "window": "1d"}})
    return SimpleNamespace(subject="walk6", team="", limits_key="k-walk6", kind="apikey", credential_id="k-walk6",
                           limits=budget)  # fmt: skip


def _ask(gateway: Any, user: str, *, stream: bool) -> tuple[Any, list[bytes], BaseException | None]:
    """One chat as the handler sends it (admitted, forwarded, watched, a stream read to its end):
    ``(ticket, what the client read, the error forward raised)``."""
    from mnemos.relay.openai_schema import ChatCompletionRequest

    doc = {"model": "remote-chat", "user": user, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}

    async def run() -> tuple[Any, list[bytes], BaseException | None]:
        STATE["read"] = asyncio.Event()
        server = await asyncio.start_server(_misbehave, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        up = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "breaks"},
              "spec": {"baseUrl": f"http://127.0.0.1:{port}/v1", "models": ["remote-chat"], "retries": 0,
                       "auth": {"secretRef": {"name": "walk6", "key": "KEY"}},
                       "routes": [{"match": "/v1/chat/completions", "timeout": "1s"}]}}  # fmt: skip
        gateway.apply({"version": 1, "models": {}, "adapters": {"breaks": up}})
        body = ChatCompletionRequest.model_validate(doc)
        route = gateway.model(body.model, "generate")
        ticket = await gateway.meter.admit(_caller(), body, route)
        read: list[bytes] = []
        try:
            response, adapter = await gateway.adapters.forward(
                body.model, "/v1/chat/completions", gateway.meter.upstream_body(body, doc, ticket), stream=stream)
            response = gateway.meter.watch(ticket, response, route, adapter=adapter,
                                           hide_usage=stream and not body.include_usage())  # as the handler does
            if stream:
                async for chunk in response.body_iterator:  # raised here: the client's body was cut
                    read.append(chunk)
                    if sum(map(len, read)) > HUGE // 2:
                        STATE["read"].set()
            else:
                read.append(bytes(response.body))
        except Exception as exc:  # noqa: BLE001 - what the client got instead
            gateway.meter.settle(ticket, 0, 0)  # as Handlers.generate's finally does
            return ticket, read, exc
        finally:
            gateway.settled = [r for r in gateway.meter.governor._pending if r.get("model") == "remote-chat"]
            await gateway.adapters.aclose()
            server.close()
        return ticket, read, None

    return asyncio.run(run())


def _events(read: list[bytes]) -> list[str]:
    return [line[6:] for line in b"".join(read).decode().split("\n") if line.startswith("data: ")]


@pytest.mark.parametrize("user", ["cut", "cut-mid-event", "silent"])
def test_a_stream_the_upstream_breaks_off_ends_with_an_openai_error_event_and_is_settled_once(
    gateway: Any, user: str
) -> None:
    ticket, read, raised = _ask(gateway, user, stream=True)
    assert raised is None, repr(raised)
    events = _events(read)
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "hello"
    assert events[-1] == "[DONE]", events
    error = json.loads(events[-2])["error"]
    assert error["code"] == "upstream_error" and error["type"] == "server_error", error
    assert "broke off" in error["message"] and "breaks" in error["message"], error
    assert ("Timeout" if user == "silent" else "ClientPayloadError") in error["message"], error
    if user == "cut-mid-event":  # the half event is ended, so that the error is an event of its own
        assert b"".join(read).count(b"\n\ndata: {\"error\"") == 1
    assert SECRET not in b"".join(read).decode()
    assert ticket.settled and not ticket.deferred  # the reservation is given back, charged what was sent
    rows = gateway.settled  # what was charged, as the governor reports it
    assert len(rows) == 1 and rows[0]["completion"] >= 1, rows


def test_a_json_answer_dripped_past_the_routes_timeout_is_a_502_timeout(gateway: Any) -> None:
    ticket, read, raised = _ask(gateway, "drip", stream=False)
    assert isinstance(raised, UpstreamError), (raised, read)
    assert raised.status == 502 and "breaks: Timeout" in raised.message, raised.message
    assert ticket.settled


def test_one_huge_event_reaches_the_client_as_it_comes_and_its_text_is_charged(gateway: Any) -> None:
    """A client that did not ask for the usage chunk (which the gateway asks for, and hides): an
    event of 3 MiB was held whole, and rescanned at each chunk, until it ended; one that never ended
    grew in the gateway's memory and never reached the client."""
    ticket, read, raised = _ask(gateway, "huge", stream=True)
    assert raised is None, repr(raised)
    assert STATE["early"], "the client got none of the event before its end"
    events = _events(read)
    assert len(events) == 2 and events[-1] == "[DONE]", [e[:80] for e in events]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "x" * HUGE
    rows = gateway.settled
    assert len(rows) == 1 and rows[0]["completion"] >= HUGE // 8, rows  # its text (4 bytes a token), not one token
