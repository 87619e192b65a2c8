"""An Adapter's upstream that misbehaves where the last walks did not look, met with the openai client.

- An upstream that drips its response headers (a line now and then, each within the route's timeout)
  held the request as long as it liked: aiohttp's ``sock_read`` bounds each read, not the headers,
  and only a JSON answer's body was bounded as a whole. The headers must now arrive within the
  route's timeout; the attempt is then retried and the fallback answers, as for any timeout.
- A stream the upstream broke off in the middle of a line handed the client half a JSON chunk,
  ended as an event: the openai client raised ``JSONDecodeError`` and never read the error event
  after it. The unended line is now not sent; the client raises ``openai.APIError`` naming the
  upstream's failure, after the chunks that came whole.

The gateway's app (not started: no Ray) with an Adapter to a raw asyncio server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from relay_support import Handler, RawUpstream, Upstream, UpstreamServer, adapter_app
from starlette.testclient import TestClient

DRIP_S = 10.0  # how long the dripping upstream takes over its headers: ten times the route's timeout


async def _drip_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 200 whose header lines come one every 0.2 s for ``DRIP_S`` seconds, then an answer."""
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
    for line in range(int(DRIP_S / 0.2)):
        writer.write(b"x-drip-%d: y\r\n" % line)
        await writer.drain()
        await asyncio.sleep(0.2)
    body = b'{"id": "up-1", "object": "chat.completion", "created": 0, "model": "m", "choices": []}'
    writer.write(b"content-length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()


def _event(text: str) -> bytes:
    chunk = {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}  # fmt: skip
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def _cut_mid_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A stream: one event, then half the next one's line, then the connection closed."""
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    for data in (_event("hello"), _event("world")[:30]):
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
        await asyncio.sleep(0.1)  # separate reads at the gateway


@pytest.fixture()
def fallback() -> Iterator[Upstream]:
    with UpstreamServer(Upstream("fallback")) as up:
        yield up


def _client(tmp_path: Path, port: int, fallback: Upstream) -> TestClient:
    return adapter_app(tmp_path, {
        "breaks": {"baseUrl": f"http://127.0.0.1:{port}/v1", "models": ["m"], "retries": 1, "fallback": "fallback",
                   "routes": [{"match": "/v1/chat/completions", "timeout": "1s"}]},
        "fallback": {"baseUrl": fallback.url, "models": [], "retries": 0},
    })  # fmt: skip


def test_an_upstream_dripping_its_headers_is_cut_at_the_routes_timeout_and_the_fallback_answers(
    tmp_path: Path, fallback: Upstream
) -> None:
    with RawUpstream(_drip_headers) as port, _client(tmp_path, port, fallback) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="k", http_client=http, max_retries=0)
        started = time.monotonic()
        answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        took = time.monotonic() - started
    # two attempts (retries: 1) of 1 s each and a backoff, not two of the upstream's 10 s
    assert took < DRIP_S / 2, f"the request took {took:.1f} s with a route timeout of 1 s"
    assert [c.message.content for c in answer.choices] == ["fallback says hi"] and len(fallback.requests) == 1


def test_a_stream_broken_off_mid_line_is_an_api_error_to_the_openai_client(tmp_path: Path, fallback: Upstream) -> None:
    with RawUpstream(_cut_mid_line) as port, _client(tmp_path, port, fallback) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="k", http_client=http, max_retries=0)
        read = []
        with pytest.raises(openai.APIError) as failed:  # a JSONDecodeError before: half a chunk, as an event
            for chunk in client.chat.completions.create(model="m", stream=True,
                                                        messages=[{"role": "user", "content": "hi"}]):  # fmt: skip
                read.append(chunk.choices[0].delta.content)
    assert read == ["hello"]  # what came whole reached the client
    assert "breaks: the upstream broke off its stream" in failed.value.message, failed.value.message
    assert fallback.requests == []  # the answer had started: no fallback


LIMIT = 1 << 20  # the gateway's limit on an answer, lowered for the test (256 MiB in production)


def _big_answer(encoding: bytes, declared: bool) -> Handler:
    """A 200 whose body inflates past ``LIMIT``: gzip (a bomb: 8 MiB of one JSON string, sent as a few
    KB) or plain, with its length declared or chunked."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import gzip

        body = b'{"id": "up-1", "object": "chat.completion", "created": 0, "model": "m", "choices": [], "x": "' + \
            b"a" * (8 << 20) + b'"}'  # fmt: skip
        if encoding:
            body = gzip.compress(body)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        head += b"content-encoding: %s\r\n" % encoding if encoding else b""
        if declared:
            writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
        else:
            writer.write(head + b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        await writer.drain()

    return answer


@pytest.mark.parametrize(("encoding", "declared"), [(b"gzip", True), (b"", True), (b"", False)],
                         ids=["gzip-bomb", "declared", "chunked"])  # fmt: skip
def test_an_answer_past_the_limit_is_a_failed_attempt_not_the_gateways_memory(
    tmp_path: Path, fallback: Upstream, monkeypatch: pytest.MonkeyPatch, encoding: bytes, declared: bool
) -> None:
    """``upstream.read()`` had no limit: a hostile upstream could hand the gateway gigabytes, or a
    gzip of a few KB that inflates to them. Past the limit the attempt fails (retried, then the
    fallback answers), naming why."""
    import mnemos.relay.adapters as adapters

    monkeypatch.setattr(adapters, "_MAX_ANSWER_BYTES", LIMIT)
    with RawUpstream(_big_answer(encoding, declared)) as port, _client(tmp_path, port, fallback) as http, \
            pytest.MonkeyPatch.context() as patch:  # fmt: skip
        reads: list[int] = []
        original = adapters._read_within

        async def watched(upstream: Any, limit: int) -> bytes:
            try:
                return await original(upstream, limit)
            except adapters._TooLarge as exc:
                reads.append(limit)
                raise exc

        patch.setattr(adapters, "_read_within", watched)
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="k", http_client=http, max_retries=0)
        answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert [c.message.content for c in answer.choices] == ["fallback says hi"] and len(fallback.requests) == 1
    assert reads == [LIMIT, LIMIT]  # both attempts (retries: 1) refused the answer at the limit
