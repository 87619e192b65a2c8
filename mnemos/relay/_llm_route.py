"""The gateway's path to a vLLM Model (Ray Serve LLM): hand over the typed request, relay the answer.

The ingress has already authenticated, rate-limited and validated the request; here it sends the
request object itself to the model's ``ModelLLMServer.openai`` over a streaming Serve handle
(as Ray Serve LLM's own ingress does), writes back vLLM's JSON body or SSE events unchanged,
and records lineage and token counts from the :class:`~mnemos.relay.llm.Usage` that ends every
answer. A stream that ends early (the client went away) cancels the model call, which aborts
the request in vLLM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import Response

from mnemos.relay._errors import as_mnemos_error
from mnemos.relay._gateway import Gateway
from mnemos.relay._responses import DONE, ClosingStream, count_events
from mnemos.relay._responses import sse as sse_event
from mnemos.relay._routes import ModelRoute
from mnemos.relay._telemetry import RequestTelemetry

__all__ = ["answer"]


def _tokens(item: Any) -> tuple[int, int] | None:
    """``(prompt, completion)`` when ``item`` is the closing usage record."""
    if isinstance(item, bytes):
        return None
    return int(getattr(item, "prompt_tokens", 0)), int(getattr(item, "completion_tokens", 0))


async def answer(gateway: Gateway, tel: RequestTelemetry, route: ModelRoute, body: Any, *, endpoint: str, rid: str,
                 priority: str, principal: Any, settle: Any) -> tuple[Response, tuple[int, int], bool]:  # fmt: skip
    """Serve ``body`` with the model's engine.

    Returns:
        ``(response, (prompt_tokens, completion_tokens), handed_over)``: ``handed_over`` is true
        for a stream, whose telemetry, lineage and ``settle(prompt, completion, cut_after=…)`` run
        when it ends (``cut_after``: the content events sent, when it ended without its counts).
    """
    stream = route.llm.remote(endpoint, body, priority, rid, tel.carrier())
    try:
        first = await stream.__anext__()
    except BaseException as exc:
        stream.cancel()
        if not isinstance(exc, Exception):
            raise
        raise as_mnemos_error(exc, model=route.name) from None
    tel.first_token()
    if not getattr(body, "stream", False):  # a JSON answer (embeddings are never streamed)
        tokens = (0, 0)
        async for item in stream:
            tokens = _tokens(item) or tokens
        gateway.record(rid, route, principal, endpoint=endpoint, stream=False, prompt_tokens=tokens[0],
                       completion_tokens=tokens[1], trace_id=tel.trace_id)  # fmt: skip
        return Response(first, media_type="application/json"), tokens, False

    async def sse() -> AsyncIterator[bytes]:
        status, tokens, complete, events = 200, (0, 0), False, 0
        try:
            yield b""  # started by ClosingStream: from here the finally runs however the answer ends
            if isinstance(first, bytes):
                events += count_events(first)
                yield first
            async for item in stream:
                counted = _tokens(item)
                if counted is None:
                    events += count_events(item)  # vLLM's chunks; a stream cut short is charged by them
                    yield item
                else:
                    tokens = counted
            complete = True
        except Exception as exc:  # noqa: BLE001 - output already started: report it in the stream
            error = as_mnemos_error(exc, model=route.name)
            status = error.status
            yield sse_event(error.to_openai())
            yield DONE
        except BaseException:
            status = 499  # the client went away
            raise
        finally:
            if not complete:
                stream.cancel()
            settle(*tokens, cut_after=None if complete else events)
            tel.finish(status, tokens_in=tokens[0], tokens_out=tokens[1])
            gateway.record(rid, route, principal, endpoint=endpoint, stream=True, complete=complete,
                           prompt_tokens=tokens[0], completion_tokens=tokens[1], trace_id=tel.trace_id)  # fmt: skip

    return ClosingStream(sse()), (0, 0), True
