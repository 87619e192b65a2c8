"""OpenAI response bodies and server-sent events, built as plain dicts and written with pydantic-core.

The gateway's hot path avoids validating its own output: shapes follow ``openai_schema``. Streams
are built from the model replica's :class:`~mnemos.neuron.GenerationChunk` objects as they arrive.
"""

from __future__ import annotations

import base64
import os
import time
from array import array
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import Response, StreamingResponse

from mnemos._model import dump_json
from mnemos.neuron import GenerationChunk

__all__ = [
    "CLIENT_WATCHED",
    "DONE",
    "PARSED_BODY",
    "ClosingStream",
    "aclose",
    "chat_body",
    "chat_chunk",
    "chat_events",
    "completion_body",
    "completion_chunk",
    "completion_events",
    "count_events",
    "embeddings_body",
    "json_response",
    "new_id",
    "sse",
    "usage",
]

DONE = b"data: [DONE]\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

PARSED_BODY = "mnemos.parsed_body"
"""The scope key under which the gateway's edge leaves the JSON object it parsed to check the body,
as ``(body, value)``: the OpenAI fast path validates that value rather than parse the body again."""

CLIENT_WATCHED = "mnemos.client_watched"
"""The scope key the gateway's edge sets when it watches the request's client itself
(``_edge.ClientWatch``, which cancels the request when the client goes): a streamed answer then
needs no watcher of its own (Starlette's costs each stream a task group and a second task)."""


class ClosingStream(StreamingResponse):
    """A streamed answer whose body generator always runs its cleanup, however the response ends.

    Starlette never closes a body iterator. One whose client left mid-stream runs its ``finally``
    only when it is garbage collected; one whose client left before the first chunk (the
    response's start could not be sent) was never started, so its ``finally`` (cancel the model's
    stream, settle the request's reservation, record it) never ran at all and the engine went on
    generating for nobody. Here the generator is started before the response is sent, up to its
    opening ``yield b""`` (which must be the first statement inside its ``try``), and closed when
    the response ends; ``on_close`` (say, dropping an upstream connection) runs then too.
    """

    def __init__(self, content: Any, *, on_close: Callable[[], None] | None = None, status_code: int = 200,
                 media_type: str = "text/event-stream", headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(content, status_code=status_code, media_type=media_type,
                         headers=SSE_HEADERS if headers is None else headers)  # fmt: skip
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        events = self.body_iterator
        try:
            opening = await events.__anext__()  # type: ignore[union-attr]
            if opening != b"":
                raise RuntimeError("a ClosingStream generator must open with `yield b\"\"` inside its try")
            if scope.get(CLIENT_WATCHED):  # a client that goes cancels this task (CLIENT_WATCHED)
                await self.stream_response(send)
                if self.background is not None:
                    await self.background()
            else:
                await super().__call__(scope, receive, send)
        finally:
            try:
                await events.aclose()  # type: ignore[union-attr]
            finally:
                if self.on_close is not None:
                    self.on_close()


async def aclose(stream: Any) -> None:
    """Close ``stream`` (an async generator, or anything with ``aclose``) now rather than when it
    is garbage collected, so its ``finally`` runs; anything without ``aclose`` is left as it is."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


def new_id(prefix: str) -> str:
    return f"{prefix}-{os.urandom(12).hex()}"  # 24 hex digits, as uuid4().hex[:24] gave, at a quarter of its cost


def now() -> int:
    return int(time.time())


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dump_json(body), status_code=status, media_type="application/json", headers=headers)


def sse(body: Any) -> bytes:
    """One ``data:`` event."""
    return b"data: " + dump_json(body) + b"\n\n"


def count_events(data: bytes) -> int:
    """The JSON ``data:`` events in a piece of an SSE stream (with or without the space after the
    colon): what a stream that ended without its usage is charged by, one token each."""
    return data.count(b"data: {") + data.count(b"data:{")


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_body(
    rid: str, model: str, text: str, finish: str | None, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish or "stop",
                "logprobs": None,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_chunk(rid: str, created: int, model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def completion_body(
    rid: str, model: str, text: str, finish: str | None, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": now(),
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish or "stop", "logprobs": None}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion_chunk(rid: str, created: int, model: str, text: str, finish: str | None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
    }


def _base64(vector: list[float]) -> str:
    data = array("f", vector)
    if data.itemsize != 4:  # pragma: no cover - every supported platform has 4-byte floats
        raise RuntimeError("float32 arrays are needed for base64 embeddings")
    return base64.b64encode(data.tobytes()).decode("ascii")


def embeddings_body(model: str, vectors: list[list[float]], encoding: str, prompt_tokens: int) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": i, "embedding": _base64(v) if encoding == "base64" else v}
        for i, v in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


async def _chain(
    first: GenerationChunk | None, chunks: AsyncIterator[GenerationChunk]
) -> AsyncIterator[GenerationChunk]:
    """The chunk already read (to answer errors before streaming starts), then the rest."""
    if first is not None:
        yield first
    async for item in chunks:
        yield item


async def chat_events(
    chunks: AsyncIterator[GenerationChunk],
    first: GenerationChunk | None,
    rid: str,
    model: str,
    include_usage: bool,
    done: dict[str, Any],
) -> AsyncIterator[bytes]:
    """SSE of a chat completion: a role chunk, content chunks, the finish, usage, ``[DONE]``.

    ``done`` receives the token counts (for lineage) and ``complete=True`` at the end, and counts
    the content events sent as they go (``events``).
    """
    created = now()
    yield sse(chat_chunk(rid, created, model, {"role": "assistant", "content": ""}, None))
    prompt_tokens = completion_tokens = 0
    finish: str | None = None

    async for chunk in _chain(first, chunks):
        prompt_tokens = chunk.prompt_tokens or prompt_tokens
        completion_tokens = chunk.completion_tokens or completion_tokens
        finish = chunk.finish_reason or finish
        if chunk.text:
            done["events"] = done.get("events", 0) + 1  # what a stream cut short is charged by
            yield sse(chat_chunk(rid, created, model, {"content": chunk.text}, None))
    yield sse(chat_chunk(rid, created, model, {}, finish or "stop"))
    if include_usage:
        body = chat_chunk(rid, created, model, {}, None)
        body["choices"] = []
        body["usage"] = usage(prompt_tokens, completion_tokens)
        yield sse(body)
    yield DONE
    done.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, complete=True)


async def completion_events(
    chunks: AsyncIterator[GenerationChunk],
    first: GenerationChunk | None,
    rid: str,
    model: str,
    include_usage: bool,
    prefix: str,
    done: dict[str, Any],
) -> AsyncIterator[bytes]:
    """SSE of a text completion (``prefix``: the prompt, when ``echo`` is set)."""
    created = now()
    prompt_tokens = completion_tokens = 0
    finish: str | None = None
    if prefix:
        yield sse(completion_chunk(rid, created, model, prefix, None))

    async for chunk in _chain(first, chunks):
        prompt_tokens = chunk.prompt_tokens or prompt_tokens
        completion_tokens = chunk.completion_tokens or completion_tokens
        finish = chunk.finish_reason or finish
        if chunk.text:
            done["events"] = done.get("events", 0) + 1
            yield sse(completion_chunk(rid, created, model, chunk.text, None))
    yield sse(completion_chunk(rid, created, model, "", finish or "stop"))
    if include_usage:
        body = completion_chunk(rid, created, model, "", None)
        body["choices"] = []
        body["usage"] = usage(prompt_tokens, completion_tokens)
        yield sse(body)
    yield DONE
    done.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, complete=True)
