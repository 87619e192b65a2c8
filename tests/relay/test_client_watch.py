"""The gateway watches its own clients when Serve does not.

``mnemos up``'s HAProxy sets Serve's ``x-request-disconnect-disabled: ?1`` on every request, so the
replica hands requests to the gateway without Serve's watch on the client (two tasks, a queue and
an ``asyncio.wait`` a request). The gateway's edge watches instead (``_edge.ClientWatch``): a
client that leaves while its request waits on an upstream gets that request cancelled, the
upstream's connection dropped, as before. An answer sent whole is not cut short by the server
reporting its end as a disconnect.

The gateway's app served by a real uvicorn on 127.0.0.1 (as the replica's direct ingress serves it,
no Ray), an Adapter to a raw asyncio upstream that notes when the gateway hangs up on it, and
clients on raw sockets and httpx that send the header as HAProxy does.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from relay_support import RawUpstream, adapter_app
from tests_support import serving

UNWATCHED = {"x-request-disconnect-disabled": "?1"}  # as HAProxy sets it (mnemos.cradle._haproxy)
HOLD_S = 20.0  # how long the upstream holds a request before it answers
ANSWER = json.dumps({"id": "up-1", "object": "chat.completion", "created": 0, "model": "slow-chat",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "late"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()  # fmt: skip
EVENTS = b"".join(b"data: %s\n\n" % json.dumps(chunk).encode() for chunk in (
    {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "slow-chat",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "late"}, "finish_reason": "stop"}]},
    {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "slow-chat", "choices": [],
     "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})) + b"data: [DONE]\n\n"  # fmt: skip


class HoldingUpstream:
    """An upstream that holds each request for ``hold`` seconds, then answers (a stream of events when
    ``stream``), and notes when the gateway hung up on a request it still held (``hung_up``)."""

    def __init__(self, hold: float, stream: bool = False) -> None:
        self.hold, self.stream = hold, stream
        self.arrived = threading.Event()
        self.hung_up = threading.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.arrived.set()
        try:
            await asyncio.wait_for(reader.read(1), self.hold)  # b"": the gateway closed the connection
            self.hung_up.set()
            return
        except TimeoutError:
            pass
        kind, answer = (b"text/event-stream", EVENTS) if self.stream else (b"application/json", ANSWER)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (kind, len(answer))
        writer.write(head + answer)
        await writer.drain()


def _gateway(tmp_path: Path, port: int) -> Any:
    return adapter_app(tmp_path, {"slow": {"baseUrl": f"http://127.0.0.1:{port}/v1", "models": ["slow-chat"]}}).app


def _post(stream: bool, headers: dict[str, str]) -> bytes:
    body = json.dumps({"model": "slow-chat", "stream": stream, "max_tokens": 5,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()  # fmt: skip
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (f"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n{head}"
            f"content-length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_client_that_leaves_gets_its_upstream_request_dropped(tmp_path: Path, stream: bool) -> None:
    """Before the edge watched, nothing noticed the client going: the upstream held the request
    for its whole ``HOLD_S`` and the gateway waited on it for nobody."""
    upstream = HoldingUpstream(HOLD_S)
    with RawUpstream(upstream) as port, serving(_gateway(tmp_path, port)) as url:
        client = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        client.sendall(_post(stream, UNWATCHED))
        assert upstream.arrived.wait(15), "the request never reached the upstream"
        left = time.monotonic()
        client.close()
        assert upstream.hung_up.wait(HOLD_S / 2), "the gateway went on waiting on the upstream for a client that left"
        assert time.monotonic() - left < 5


def test_an_answer_sent_whole_is_not_cut_short(tmp_path: Path) -> None:
    """The server reports an answer's end as a disconnect: the watch must not cancel what follows
    (the answer is whole, the connection kept alive for the next request)."""
    plain, events = HoldingUpstream(0.05), HoldingUpstream(0.05, stream=True)
    with RawUpstream(plain) as plain_port, RawUpstream(events) as events_port:
        app = adapter_app(tmp_path, {
            "plain": {"baseUrl": f"http://127.0.0.1:{plain_port}/v1", "models": ["plain-chat"]},
            "events": {"baseUrl": f"http://127.0.0.1:{events_port}/v1", "models": ["events-chat"]}}).app  # fmt: skip
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            for model in ("plain-chat", "events-chat", "plain-chat", "events-chat"):
                stream = model == "events-chat"
                body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
                reply = http.post("/v1/chat/completions", json=body, headers=UNWATCHED)
                assert reply.status_code == 200, reply.text
                if stream:
                    assert '"late"' in reply.text and reply.text.rstrip().endswith("data: [DONE]"), reply.text
                else:
                    assert reply.json()["choices"][0]["message"]["content"] == "late"
    assert not plain.hung_up.is_set() and not events.hung_up.is_set()


class DrippingStream:
    """An upstream whose stream sends an event every 0.2 s for ``HOLD_S``, and notes when the gateway
    hung up on it (``hung_up``) before its end."""

    def __init__(self) -> None:
        self.hung_up = threading.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        event = EVENTS.split(b"\n\n", 1)[0] + b"\n\n"
        for _ in range(int(HOLD_S / 0.2)):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 0.2) == b"":  # the gateway closed the connection
                    self.hung_up.set()
                    return
            except TimeoutError:
                pass
        writer.write(b"0\r\n\r\n")


def test_a_client_that_leaves_mid_stream_gets_the_stream_dropped(tmp_path: Path) -> None:
    """Starlette watches a streamed answer's client with a task of its own; with the edge's watch
    the stream has none (``_responses.CLIENT_WATCHED``), and the edge's cancels it."""
    upstream = DrippingStream()
    with RawUpstream(upstream) as port, serving(_gateway(tmp_path, port)) as url:
        client = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=15)
        client.sendall(_post(True, UNWATCHED))
        seen = b""
        while b"data:" not in seen:  # the answer started: its first event is here
            seen += client.recv(4096)
        client.close()
        assert upstream.hung_up.wait(10), "the gateway went on reading the upstream's stream for a client that left"
