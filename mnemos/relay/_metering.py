"""What the gateway meters on each OpenAI request: limits and budgets, spend, the response cache,
and the ``x-mnemos-overhead-ms`` header (time spent in MNEMOS, not upstream).

``Meter`` sits between the handlers and SOUL's ``Governor``: it reads a model's (or adapter's)
pricing, limits and cache spec, sizes the request's reservation, and settles it with the real
token counts: from the model deployment, from an adapter's JSON answer, or from the usage chunk of
an adapter's stream (asked upstream with ``stream_options.include_usage``).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import contextmanager
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic_core import from_json

from mnemos.relay._cache import CachedAnswer, ResponseCache
from mnemos.relay._responses import aclose, count_events
from mnemos.relay._routes import AnyRoute
from mnemos.relay.adapters import UpstreamAnswer
from mnemos.soul.limits import Governor, Ticket, estimate_tokens

__all__ = ["OVERHEAD_HEADER", "Meter", "OverheadHeader", "upstream_time"]

OVERHEAD_HEADER = b"x-mnemos-overhead-ms"
_UPSTREAM = "mnemos_upstream_s"
_ADAPTER_RESERVE = 1024  # an adapter request without max_tokens reserves this many completion tokens


_NOSNIFF = (b"x-content-type-options", b"nosniff")  # a browser takes each answer as the type it says


class OverheadHeader:
    """Pure ASGI: adds ``x-mnemos-overhead-ms`` (elapsed minus upstream time) and
    ``X-Content-Type-Options: nosniff`` to every answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = scope.setdefault("state", {})
        state[_UPSTREAM] = 0.0

        async def send_with_header(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - start - state.get(_UPSTREAM, 0.0)) * 1000.0
                message = {**message, "headers": [*message.get("headers", ()), (OVERHEAD_HEADER, b"%.3f" % ms),
                                                  _NOSNIFF]}  # fmt: skip
            await send(message)

        await self.app(scope, receive, send_with_header)


@contextmanager
def upstream_time(request: Request) -> Any:
    """Count the time inside the block as upstream (model or adapter), not MNEMOS overhead."""
    start = time.perf_counter()
    try:
        yield
    finally:
        state = request.scope.get("state")
        if isinstance(state, dict):
            state[_UPSTREAM] = state.get(_UPSTREAM, 0.0) + time.perf_counter() - start


def _specs(source: Any) -> tuple[Any, Any, Any]:
    """``(pricing, limits, cache)`` parsed from a route entry (cached on it) or an adapter target."""
    from mnemos.genome.metering import CacheSpec, Pricing, UsageLimits

    parsed = source.get("_metering") if isinstance(source, dict) else None
    if parsed is None and isinstance(source, dict):
        parsed = tuple(
            None if source.get(name) is None else cls.model_validate(source[name])
            for name, cls in (("pricing", Pricing), ("limits", UsageLimits), ("cache", CacheSpec))
        )
        source["_metering"] = parsed
    return parsed  # type: ignore[return-value]


def _beside_messages(body: Any, forwarded: bool) -> int:
    """The prompt tokens of a chat request outside its messages' text: tool definitions, earlier
    tool calls, a response format's schema and, ``forwarded`` (an Adapter sends the client's JSON as
    it came), fields RELAY does not parse (the legacy ``functions``). The model reads them all and
    its count of the prompt holds them: a reservation without them was a few tokens for 40 KB of
    ``tools``, which a small budget then admitted and paid in full."""
    from pydantic_core import to_json

    parts = [body.tools, body.response_format, [m.tool_calls for m in body.messages if m.tool_calls],
             body.model_extra if forwarded else None]  # fmt: skip
    parts = [part for part in parts if part]
    return estimate_tokens(to_json(parts).decode()) if parts else 0


class Meter:
    """Limits, spend and cache of one gateway replica.

    Args:
        gateway: the replica's ``Gateway`` (routes and adapters).
        governor: SOUL's limits (default: one over the gateway's ENGRAM).
    """

    def __init__(self, gateway: Any, governor: Governor | None = None) -> None:
        self.gateway = gateway
        self.governor = governor or Governor(getattr(gateway, "engram", None))
        self.cache = ResponseCache()

    def specs(self, route: AnyRoute, adapter: str | None = None) -> tuple[Any, Any, Any]:
        """``(pricing, limits, cache)`` of a model route, or of the Adapter serving the routed model
        (``adapter``: the one that answered, when a fallback did)."""
        if route.serving == "adapter":
            target = self.gateway.adapters.targets.get(adapter or route.adapter)
            if target is None:
                return None, None, None
            spec = target.spec
            pricing = spec.pricing.get(route.name) or spec.pricing.get("*")
            return pricing, spec.limits, spec.cache
        return _specs(route.entry)

    async def admit(self, principal: Any, body: Any, route: AnyRoute) -> Ticket:
        """Reserve the request's ceiling (prompt estimate + ``max_tokens``) on every limit."""
        pricing, limits, _ = self.specs(route)
        if hasattr(body, "messages"):
            prompt = sum(estimate_tokens(m.text()) for m in body.messages)
            prompt += _beside_messages(body, forwarded=route.serving == "adapter")
        elif hasattr(body, "prompt_text"):
            prompt = estimate_tokens(body.prompt_text())
        else:
            prompt = sum(estimate_tokens(t) for t in body.texts())
        limit = body.token_limit() if hasattr(body, "token_limit") else 0
        if route.serving == "adapter" and limit is not None:
            # The client's JSON goes upstream as sent, max_completion_tokens and max_tokens both: an
            # upstream may read either (reserve the larger, the most it may make).
            limit = max(v for v in (limit, getattr(body, "max_tokens", None)) if isinstance(v, int))
        if limit is None:  # (a completion's null: OpenAI's 16)
            limit = 16 if hasattr(body, "prompt_text") else route.max_tokens or (
                _ADAPTER_RESERVE if route.serving == "adapter" else 16)  # fmt: skip
        reserve = prompt + int(limit) * max(1, int(getattr(body, "n", 1) or 1))
        ticket = await self.governor.admit(principal, body.model, reserve_tokens=reserve, pricing=pricing,
                                           model_limits=limits)  # fmt: skip
        ticket.prompt_estimate = min(prompt, ticket.reserved_tokens)
        return ticket

    def settle(
        self, ticket: Ticket | None, prompt_tokens: int, completion_tokens: int, *, cached: bool = False,
        cut_after: int | None = None,
    ) -> None:
        """Record what the request used (once).

        ``cut_after``: the answer ended without its token counts (the client went away, or the
        engine failed mid-stream) after that many content events. It is charged as the prompt's
        estimate plus one token per event, so that cutting a stream short is never free.
        """
        if ticket is None or ticket.deferred:
            return
        if cut_after is not None and not (prompt_tokens or completion_tokens):
            prompt_tokens, completion_tokens = ticket.prompt_estimate, cut_after
        self.governor.settle(ticket, prompt_tokens, completion_tokens, cached=cached)

    # -- cache -----------------------------------------------------------------------------------
    @staticmethod
    def scope(ticket: Ticket) -> str:
        """Whose cached answers a request may be handed: its team's (members share, as they share
        spaces), else its principal's own. Shared by everyone, a hit handed one principal another's
        answer and told it (``x-mnemos-cache: hit``) that someone had asked exactly that."""
        return f"team:{ticket.team}" if ticket.team else f"principal:{ticket.principal}"

    def source(self, route: AnyRoute) -> str:
        """What answers ``route``, part of its cache keys: a Model's served spec (its fingerprint, the
        spec without pricing, limits and cache) and loaded weights, or an Adapter's upstreams. An
        answer cached before a new artifact, runtime, baseUrl or upstream model (or a Model that took
        an Adapter's name) is then never served for the new one."""
        if route.serving == "adapter":
            return "adapter|" + self.gateway.adapters.source(route.adapter)
        return f"model|{route.entry.get('fingerprint')}|{route.digest}"

    def cached(self, endpoint: str, body: Any, route: AnyRoute, ticket: Ticket,
               sent: dict[str, Any] | None = None) -> tuple[str | None, CachedAnswer | None]:  # fmt: skip
        """``(key, answer)``: the cached answer when there is one (the ticket settled as cached).

        ``sent``: the JSON forwarded upstream when it is not ``body`` (adapters), keyed whole.
        """
        spec = self.specs(route)[2]
        key = None if spec is None else ResponseCache.key(endpoint, body, spec, sent, self.source(route),
                                                          self.scope(ticket))  # fmt: skip
        hit = self.cache.get(key, body.model)
        if hit is not None:
            self.governor.settle(ticket, hit.prompt_tokens, hit.completion_tokens, cached=True)
        return key, hit

    def store(self, key: str | None, route: AnyRoute, response: Response, prompt: int, completion: int) -> None:
        spec = self.specs(route)[2] if key is not None else None  # None: the cache went while it was answered
        if spec is not None and response.status_code == 200:
            self.cache.put(key, spec, bytes(response.body), prompt, completion)

    # -- adapters --------------------------------------------------------------------------------
    @staticmethod
    def upstream_body(body: Any, raw: dict[str, Any], ticket: Ticket | None = None) -> dict[str, Any]:
        """The adapter request: a stream asks for the usage chunk, so spend is counted. A request that
        names no ceiling (``max_tokens``, ``max_completion_tokens``) while a budget or a tokens-per-minute
        limit counts it is sent with its reservation as the ceiling: an upstream left to its own default
        (the rest of the context) could spend past what was reserved, and a budget would no longer
        bound overspend by what is in flight."""
        if raw.get("stream"):
            options = dict(raw.get("stream_options") or {})
            if not options.get("include_usage"):
                raw = {**raw, "stream_options": {**options, "include_usage": True}}
        metered = ticket is not None and (ticket.budget_scopes or ticket.token_buckets)
        if metered and raw.get("max_tokens") is None and raw.get("max_completion_tokens") is None:
            choices = max(1, int(getattr(body, "n", 1) or 1))
            ceiling = max(1, (ticket.reserved_tokens - ticket.prompt_estimate) // choices)  # type: ignore[union-attr]
            field = "max_completion_tokens" if hasattr(body, "messages") else "max_tokens"  # (completions: only this)
            raw = {**raw, field: ceiling}
        return raw

    def watch(self, ticket: Ticket, response: Response, route: AnyRoute, key: str | None = None,
              adapter: str | None = None, hide_usage: bool = False) -> Response:  # fmt: skip
        """Settle an adapter's answer: now for JSON, at the end of the stream for SSE.

        ``adapter``: the one that answered, when a fallback did: its prices apply, not the first's.
        ``hide_usage``: the client did not ask for the usage chunk that ``upstream_body`` asked for;
        it is counted and left out (a chunk with no ``choices`` breaks clients that read ``choices[0]``).
        """
        if adapter is not None and adapter != route.adapter:
            ticket.pricing = self.specs(route, adapter)[0]
            key = None  # a fallback's answer, kept, would be served as the first's once it answers again
        if isinstance(response, StreamingResponse):  # an adapter's ClosingStream: _scan is what it starts
            ticket.deferred = True
            response.body_iterator = self._scan(ticket, response.body_iterator, hide_usage)
            return response
        if response.status_code >= 400:
            prompt, completion = 0, 0
        else:
            answer = response.answer if isinstance(response, UpstreamAnswer) else _parsed(bytes(response.body))
            prompt, completion = _json_counts(ticket, answer)
        self.governor.settle(ticket, prompt, completion)
        self.store(key, route, response, prompt, completion)
        return response

    async def _scan(self, ticket: Ticket, chunks: AsyncIterable[Any], hide_usage: bool = False) -> AsyncIterator[Any]:
        usage: tuple[int, int] | None = None
        tail = b""
        held = bytearray()  # with hide_usage: the start of an event not yet complete
        unread = bytearray()  # the start of an event whose text is not yet counted
        events = text = 0  # content events, and the bytes of the text they carry
        try:
            yield b""  # started by ClosingStream: from here the finally settles however the answer ends
            async for chunk in chunks:
                if not chunk:
                    continue
                data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
                events += count_events(data)
                text += _events_text(_complete_events(unread, data))
                if len(unread) > _MAX_EVENT:  # an event that never ends: its bytes, as text
                    text += len(unread)
                    unread.clear()
                if b'"usage"' in data or b'"usage"' in tail + data[:16]:
                    usage = _stream_usage(tail + data) or usage
                tail = data[-4096:]
                if hide_usage:
                    if ready := _without_usage_chunks(_complete_events(held, data)):
                        yield ready
                    if len(held) > _MAX_EVENT:  # a huge event is no usage chunk: the client gets it as it comes
                        yield bytes(held)
                        held.clear()
                    continue
                yield chunk
            if held:
                yield _without_usage_chunks(bytes(held))
        finally:
            await aclose(chunks)  # the upstream's stream, now rather than when garbage collected
            ticket.deferred = False
            if usage is None:  # cut short, an upstream that ignores include_usage or counts 0: its events and text
                self.settle(ticket, 0, 0, cut_after=max(events, _text_tokens(text)))
            else:
                self.governor.settle(ticket, *_floored(ticket, usage, text))


_MAX_COUNT = 10**9  # tokens one answer can plausibly report


_MAX_EVENT = 1 << 20  # bytes of one SSE event the meter waits for before counting it as text
_TEXT_FIELDS = ("content", "text", "reasoning_content", "reasoning", "refusal")


_TEXT_BYTES_PER_TOKEN = 4
"""Bytes of returned text charged as a token when the count is missing or 0: about what English
text is a token (a reservation, a ceiling, counts 2). A cut stream of a model, about a token an
event, was charged twice its tokens at 2."""


def _text_tokens(size: int) -> int:
    """The tokens charged for ``size`` bytes of returned text when the upstream's count is missing or 0."""
    return -(-size // _TEXT_BYTES_PER_TOKEN)


def _choice_text(choices: Any, part: str) -> int:
    """The bytes of text in ``choices`` (their ``message``, or ``delta`` for a stream, and a
    completion's ``text``): content, reasoning, refusal, tool and function calls."""
    size = 0
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        message = choice.get(part)
        pieces = [choice.get("text")]
        if isinstance(message, dict):
            pieces += [message.get(name) for name in _TEXT_FIELDS]
            calls = message.get("tool_calls")
            pieces += [call.get("function") for call in calls if isinstance(call, dict)] if isinstance(
                calls, list) else []  # fmt: skip
            pieces.append(message.get("function_call"))
        for piece in pieces:
            if isinstance(piece, dict):  # a call: its name and arguments
                piece = [piece.get("name"), piece.get("arguments")]
            if isinstance(piece, list):  # content parts, or a call's name and arguments
                piece = "".join(p if isinstance(p, str) else str(p.get("text") or "") if isinstance(p, dict)
                                else "" for p in piece)  # fmt: skip
            if isinstance(piece, str):
                size += len(piece.encode("utf-8", "ignore"))
    return size


def _events_text(events: bytes) -> int:
    """The bytes of text the stream chunks in ``events`` (complete SSE events) carry."""
    size = 0
    if b'"choices"' not in events:
        return 0
    for line in events.split(b"\n"):
        line = line.strip()
        if line.startswith(b"data:") and b'"choices"' in line:
            try:
                chunk = from_json(line[5:].strip())
            except ValueError:
                continue
            if isinstance(chunk, dict):
                size += _choice_text(chunk.get("choices"), "delta")
    return size


def _floored(ticket: Ticket, usage: tuple[int, int], text: int) -> tuple[int, int]:
    """``usage`` as settled: a count of 0 for what was not nothing (a prompt, returned text) is the
    gateway's own estimate instead. An upstream claiming ``{prompt_tokens: 0, completion_tokens: 0}``
    for a whole answer made it free, past budgets and tokens-per-minute limits."""
    prompt, completion = usage
    return prompt or ticket.prompt_estimate, completion or _text_tokens(text)


def _parsed(content: bytes) -> Any:
    """The JSON value of ``content``, or None when it is not JSON."""
    try:
        return from_json(content)
    except ValueError:
        return None


def _json_counts(ticket: Ticket, answer: Any) -> tuple[int, int]:
    """``(prompt, completion)`` charged for an adapter's JSON answer (``answer``: its body parsed):
    its ``usage`` (``_floored``); an answer without one is charged the whole reservation (or its
    text, when that is more)."""
    usage = _usage_in(answer)
    if usage is not None and usage[1]:  # a completion count: the text is not needed (``_floored``)
        return _floored(ticket, usage, 0)
    text = _choice_text(answer.get("choices"), "message") if isinstance(answer, dict) else 0
    if usage is None:
        return ticket.prompt_estimate, max(ticket.reserved_tokens - ticket.prompt_estimate, _text_tokens(text))
    return _floored(ticket, usage, text)


def _usage_of(content: bytes) -> tuple[int, int] | None:
    """``(prompt, completion)`` from an answer's ``usage``; None when it has none, or when its counts
    are not whole numbers from 0 to a billion (an upstream's garbage, or a negative count that would
    hand tokens and spend back, is charged as a missing count: the reservation). A ``usage`` with
    neither ``prompt_tokens`` nor ``completion_tokens`` (``{}``, ``total_tokens`` alone) counts
    nothing and was free: it is missing too. ``completion_tokens`` left out (embeddings) is
    ``total_tokens`` less the prompt, or 0; ``prompt_tokens`` left out is 0."""
    return _usage_in(_parsed(content))


def _usage_in(answer: Any) -> tuple[int, int] | None:
    """``_usage_of`` an answer already parsed."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion, total = (usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if prompt is None and completion is None:
        return None
    if completion is None:
        completion = total - prompt if type(total) is int and type(prompt) is int and total >= prompt else 0
    counts = (0 if prompt is None else prompt, completion)
    if not all(type(n) is int and 0 <= n <= _MAX_COUNT for n in counts):
        return None
    return counts


_EVENT_END = re.compile(rb"\r?\n\r?\n")


def _complete_events(pending: bytearray, data: bytes) -> bytes:
    """The complete SSE events (a blank line ends one) of ``pending`` and ``data``, taken out of
    ``pending``, which keeps the rest. ``pending`` (no complete event in it) is not searched again: an
    event of 10 MB, rescanned whole at each of its chunks, took the replica 15 s of CPU."""
    start = max(0, len(pending) - 3)
    pending += data
    end = max((m.end() for m in _EVENT_END.finditer(pending, start)), default=0)
    events = bytes(pending[:end])
    del pending[:end]
    return events


def _without_usage_chunks(events: bytes) -> bytes:
    """``events`` without the usage chunk (``"choices": []`` with a ``usage``) a client did not ask for."""
    if b'"usage"' not in events:
        return events
    kept = []
    for event in re.split(rb"(?<=\n\n)|(?<=\r\n\r\n)", events):
        if b'"usage"' in event:
            data = b"".join(line.strip()[5:] for line in event.splitlines() if line.strip().startswith(b"data:"))
            try:
                chunk = from_json(data)
            except ValueError:
                chunk = None
            if isinstance(chunk, dict) and chunk.get("choices") == [] and chunk.get("usage"):
                continue
        kept.append(event)
    return b"".join(kept)


def _stream_usage(data: bytes) -> tuple[int, int] | None:
    """The usage of the last SSE event in ``data`` that carries one."""
    found = None
    for line in data.split(b"\n"):
        line = line.strip()
        if line.startswith(b"data:") and b'"usage"' in line:
            usage = _usage_of(line[5:].strip())
            if usage is not None and usage != (0, 0):
                found = usage
    return found
