"""What the gateway does for each OpenAI request: admit, route, call the model (or adapter), answer.

Every request gets telemetry (span, metrics) and a lineage event; a stream's model call is
cancelled when the stream ends early (the client went away) or fails.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from mnemos.errors import MnemosError, ModelAccessError, ValidationError
from mnemos.neuron import GenerationChunk, GenerationRequest
from mnemos.neuron.runtime import Priority
from mnemos.relay import _llm_route as llm_route
from mnemos.relay import _responses as out
from mnemos.relay._cache import CachedAnswer
from mnemos.relay._edge import EdgeSeam
from mnemos.relay._errors import as_mnemos_error
from mnemos.relay._gateway import Gateway
from mnemos.relay._metering import upstream_time
from mnemos.relay._routes import ModelRoute
from mnemos.relay._telemetry import RequestTelemetry
from mnemos.relay.openai_schema import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from mnemos.soul.pii import redact_request

_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}
REQUEST_ID_HEADER = "x-mnemos-request-id"
"""On an adapter's answer (whose body carries the upstream's id): MNEMOS's id of the request, its
lineage node being ``request:<id>``."""


def _priority(request: Request) -> Priority:
    value = request.headers.get("x-mnemos-priority")
    if value is None:
        return "interactive"
    value = value.strip().lower()
    if value == "batch":
        return "batch"
    if value != "interactive":
        raise ValidationError("X-Mnemos-Priority must be 'interactive' or 'batch'", param="X-Mnemos-Priority")
    return "interactive"


def _status(exc: BaseException) -> int:
    if isinstance(exc, MnemosError):
        return exc.status
    return 499 if isinstance(exc, asyncio.CancelledError) else 500


def _refuse_engine_features(body: ChatCompletionRequest | CompletionRequest, route: ModelRoute) -> None:
    """422 naming the first field (``n``, ``tools``, ``logprobs`` …) that this model's runtime cannot serve."""
    features = body.engine_features()
    if features:
        engine = route.entry.get("engine")
        raise ValidationError(f"{features[0]}: model {route.name!r} runs on the {engine} runtime, which does not "
                              "support it; serve the model with engine: vllm", param=features[0])  # fmt: skip


def _unbounded(body: ChatCompletionRequest | CompletionRequest) -> bool:
    """Whether the client named no completion ceiling (left out, or null)."""
    if isinstance(body, CompletionRequest):  # (its schema's default, 16, is not the client's)
        return "max_tokens" not in body.model_fields_set or body.max_tokens is None
    return body.token_limit() is None


def _max_tokens(body: ChatCompletionRequest | CompletionRequest, route: ModelRoute) -> int:
    """The request's completion token limit, checked against the model's. Unnamed: a chat's is the
    model's (else 16), a completion's OpenAI's 16 within the model's: a Model whose ``maxTokens`` is
    below 16 refused a completion naming none for a ``max_tokens`` the client never sent."""
    model_limit = route.max_tokens
    if _unbounded(body):
        return min(16, model_limit or 16) if isinstance(body, CompletionRequest) else model_limit or 16
    limit = int(body.token_limit() or 0)
    if model_limit and limit > model_limit:
        param = "max_completion_tokens" if getattr(body, "max_completion_tokens", None) else "max_tokens"
        raise ValidationError(f"{param}: {limit} is more than model {route.name!r} allows ({model_limit})", param=param)
    return limit


def _generation(body: ChatCompletionRequest | CompletionRequest, max_tokens: int, priority: Priority, rid: str,
                trace: dict[str, str]) -> GenerationRequest:  # fmt: skip
    """The runtime's request for an OpenAI body; sampling fields the client left out keep their defaults."""
    request = GenerationRequest(max_tokens=max_tokens, priority=priority, request_id=rid, trace=trace)
    if body.temperature is not None:
        request.temperature = body.temperature
    if body.top_p is not None:
        request.top_p = body.top_p
    if body.seed is not None:
        request.seed = body.seed
    if body.stop is not None:
        request.stop = body.stop_list()
    if isinstance(body, ChatCompletionRequest):
        request.messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    else:
        request.prompt = body.prompt_text()
    return request


def _redacted(body: Any, sent: dict[str, Any] | None) -> tuple[Any, dict[str, Any] | None]:
    """``relay.redactPrompts``: the request (and the JSON an Adapter forwards) with PII redacted
    from what a model reads (``mnemos.soul.pii.redact_request``)."""
    body = type(body).model_validate(redact_request(body.model_dump(exclude_unset=True)))
    return body, (redact_request(sent) if sent is not None else None)


async def _result(response: Any, model: str) -> Any:
    """Await a handle call, cancelling it if this request is cancelled; errors mapped to ours."""
    try:
        return await response
    except BaseException as exc:
        if not isinstance(exc, Exception):  # CancelledError: the client went away
            response.cancel()
            raise
        raise as_mnemos_error(exc, model=model) from None


async def _first(stream: Any, model: str) -> tuple[GenerationChunk | None, bool]:
    """The first chunk of a stream, so that errors before any output are plain HTTP errors."""
    try:
        return await stream.__anext__(), False
    except StopAsyncIteration:
        return None, True
    except BaseException as exc:
        stream.cancel()
        if not isinstance(exc, Exception):
            raise
        raise as_mnemos_error(exc, model=model) from None


def _abandoned(ticket: Any) -> tuple[int, int]:
    """What a request the client left after it was sent to an Adapter's upstream is charged: its
    reservation (the prompt's estimate and the completion's ceiling). The upstream goes on with it,
    and a request dropped just before its answer came was charged nothing: a key could spend past
    its budget and tokens-per-minute limits that way, one large request after another."""
    return ticket.prompt_estimate, max(0, ticket.reserved_tokens - ticket.prompt_estimate)


async def _nothing() -> AsyncIterator[GenerationChunk]:
    return
    yield  # pragma: no cover - makes this an async generator


class Handlers:
    """The OpenAI endpoints over one replica's ``Gateway`` and edge seam."""

    def __init__(self, gateway: Gateway, edge: EdgeSeam) -> None:
        self.gateway = gateway
        self.edge = edge
        self.meter = gateway.meter
        self.redact_prompts = gateway.settings.relay.redact_prompts  # every model's and Adapter's

    async def refuse_first(self, principal: Any, model: str) -> None:
        """Before a model's lookup answers 404, 503 or 400 (not served, not ready, an embedding
        model asked to generate): refuse a caller that may not call ``model`` (403, as ``Meter.admit``
        refuses it when it is ready), so that its state says nothing to one. Only on that error path:
        a served model's request checks access once, in ``Meter.admit``. The name is echoed cut to
        120 characters, as a 404 cuts it."""
        try:
            await self.meter.governor.check_access(principal, model)
        except ModelAccessError as exc:
            if len(model) <= 120:
                raise
            raise ModelAccessError(exc.message.replace(model, f"{model[:120]}…", 1), param="model") from None

    def refused(self, request: Request, exc: BaseException, principal: Any, verb: str = "infer") -> None:
        """Count (``mnemos_relay_auth_failures_total{reason="forbidden"}``) and audit a 403
        ``model_not_allowed``, as the edge does its own refusals."""
        guard = self.edge.guard
        if isinstance(exc, ModelAccessError) and guard is not None:
            guard.refused(request, exc, principal, verb)

    async def generate(
        self, request: Request, body: ChatCompletionRequest | CompletionRequest, endpoint: str
    ) -> Response:
        """``/v1/chat/completions`` (``endpoint="chat"``) or ``/v1/completions``."""
        path = _PATHS[endpoint]
        tel = RequestTelemetry(path, "unknown", request.headers)
        status, tokens, handed_over, ticket, principal = 200, (0, 0), False, None, None
        forwarded = False  # sent to an Adapter's upstream, which works on it whether or not the client stays
        try:
            principal = await self.edge.admit(request, "infer")
            tel.caller(principal)
            priority = _priority(request)
            rid = out.new_id("chatcmpl" if endpoint == "chat" else "cmpl")
            try:
                route = self.gateway.model(body.model, "generate")
            except MnemosError:
                await self.refuse_first(principal, body.model)
                raise
            tel.model = body.model
            ticket = await self.meter.admit(principal, body, route)
            body, sent, cache_key, hit = await self._looked_up(request, endpoint, body, route, ticket)
            if hit is not None:
                return self._from_cache(hit, rid, route, principal, endpoint, tel)
            if route.serving == "adapter":
                forwarded = True
                with upstream_time(request):
                    response, adapter = await self.gateway.adapters.forward(
                        body.model, path, self.meter.upstream_body(body, sent, ticket), stream=body.stream)  # fmt: skip
                response = self.meter.watch(ticket, response, route, cache_key, adapter=adapter,
                                            hide_usage=bool(body.stream) and not body.include_usage())  # fmt: skip
                response.headers[REQUEST_ID_HEADER] = rid  # the body's id is the upstream's: lineage is under this one
                status = response.status_code
                self.gateway.record(rid, route, principal, endpoint=endpoint, stream=body.stream, status=status,
                                    adapter=adapter, trace_id=tel.trace_id)  # fmt: skip
                return response
            max_tokens = _max_tokens(body, route)
            if route.serving == "llm":  # vLLM through Ray Serve LLM: the engine serves the whole request
                if _unbounded(body):  # the model's cap (vLLM's default for a chat is the rest of the context)
                    body = body.model_copy(update={"max_tokens": max_tokens})  # (a completion's: OpenAI's 16)
                with upstream_time(request):
                    response, tokens, handed_over = await llm_route.answer(
                        self.gateway, tel, route, body, endpoint=endpoint, rid=rid, priority=priority,
                        principal=principal, settle=functools.partial(self.meter.settle, ticket))  # fmt: skip
                if not handed_over:  # a JSON answer (a stream has no cache key)
                    self.meter.store(cache_key, route, response, *tokens)
                return response
            _refuse_engine_features(body, route)
            generation = _generation(body, max_tokens, priority, rid, tel.carrier())
            prefix = (generation.prompt or "") if isinstance(body, CompletionRequest) and body.echo else ""
            if body.stream:
                response = await self._stream(tel, route, generation, body, rid, principal, endpoint, prefix,
                                              ticket, request)  # fmt: skip
                handed_over = True
                return response
            with upstream_time(request):
                answer = await _result(route.complete.remote(generation), body.model)
            tokens = (answer.prompt_tokens, answer.completion_tokens)
            self.gateway.record(rid, route, principal, endpoint=endpoint, stream=False, prompt_tokens=tokens[0],
                                completion_tokens=tokens[1], trace_id=tel.trace_id)  # fmt: skip
            build = out.chat_body if endpoint == "chat" else out.completion_body
            reply = out.json_response(build(rid, body.model, prefix + answer.text, answer.finish_reason, *tokens))
            self.meter.store(cache_key, route, reply, *tokens)
            return reply
        except BaseException as exc:
            status = _status(exc)
            self.refused(request, exc, principal)
            if forwarded and ticket is not None and isinstance(exc, asyncio.CancelledError):
                tokens = _abandoned(ticket)
            raise
        finally:
            if not handed_over:
                self.meter.settle(ticket, *tokens)
                tel.finish(status, tokens_in=tokens[0], tokens_out=tokens[1])

    async def _looked_up(self, request: Request, endpoint: str, body: Any, route: Any,
                         ticket: Any) -> tuple[Any, Any, Any, CachedAnswer | None]:  # fmt: skip
        """``(body, sent, cache key, hit)``: the body redacted when ``relay.redactPrompts`` is on, the
        client's JSON an Adapter forwards as it was sent (``None`` for a model), and the cache's key
        and answer for them (``None``: not cached)."""
        sent = await request.json() if route.serving == "adapter" else None
        if self.redact_prompts:
            body, sent = _redacted(body, sent)
        cache_key, hit = self.meter.cached(endpoint, body, route, ticket, sent)
        return body, sent, cache_key, hit

    def _from_cache(self, hit: CachedAnswer, rid: str, route: Any, principal: Any, endpoint: str,
                    tel: RequestTelemetry) -> Response:  # fmt: skip
        """A cached answer, as the request ``rid``: lineage notes it (``cached``, the answer's token
        counts; no spend), and its id is in the header, as for any other answer."""
        self.gateway.record(rid, route, principal, endpoint=endpoint, stream=False, cached=True,
                            prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens,
                            trace_id=tel.trace_id)  # fmt: skip
        return Response(hit.content, media_type="application/json",
                        headers={"x-mnemos-cache": "hit", REQUEST_ID_HEADER: rid})  # fmt: skip

    async def _stream(self, tel: RequestTelemetry, route: ModelRoute, generation: GenerationRequest,
                      body: ChatCompletionRequest | CompletionRequest, rid: str, principal: Any, endpoint: str,
                      prefix: str, ticket: Any, request: Request) -> StreamingResponse:  # fmt: skip
        """SSE whose end (or the client's disconnect) closes the model's stream."""
        stream = route.generate.remote(generation)
        with upstream_time(request):
            first, ended = await _first(stream, body.model)
        tel.first_token()
        done: dict[str, Any] = {}
        chunks = _nothing() if ended else stream
        if endpoint == "chat":
            events = out.chat_events(chunks, first, rid, body.model, body.include_usage(), done)
        else:
            events = out.completion_events(chunks, first, rid, body.model, body.include_usage(), prefix, done)

        async def sse() -> AsyncIterator[bytes]:
            status = 200
            try:
                yield b""  # started by ClosingStream: from here the finally runs however the answer ends
                async for event in events:
                    yield event
            except Exception as exc:  # noqa: BLE001 - output already started: report it in the stream
                status = _status(as_mnemos_error(exc, model=route.name))
                yield out.sse(as_mnemos_error(exc, model=route.name).to_openai())
                yield out.DONE
            except BaseException:
                status = 499  # the client went away
                raise
            finally:
                complete = bool(done.get("complete"))
                if not complete:
                    stream.cancel()
                prompt_tokens, completion_tokens = done.get("prompt_tokens", 0), done.get("completion_tokens", 0)
                self.meter.settle(ticket, prompt_tokens, completion_tokens,
                                  cut_after=None if complete else done.get("events", 0))  # fmt: skip
                tel.finish(status, tokens_in=prompt_tokens, tokens_out=completion_tokens)
                self.gateway.record(rid, route, principal, endpoint=endpoint, stream=True, complete=complete,
                                    prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                    trace_id=tel.trace_id)  # fmt: skip

        return out.ClosingStream(sse())

    async def embeddings(self, request: Request, body: EmbeddingRequest) -> Response:
        """``/v1/embeddings``: floats, or base64 of float32 (what the openai client asks by default)."""
        tel = RequestTelemetry(_PATHS["embeddings"], "unknown", request.headers)
        status, prompt_tokens, ticket, principal = 200, 0, None, None
        forwarded = False
        try:
            principal = await self.edge.admit(request, "infer")
            tel.caller(principal)
            rid = out.new_id("emb")
            try:
                route = self.gateway.model(body.model, "embed")
            except MnemosError:
                await self.refuse_first(principal, body.model)
                raise
            tel.model = body.model
            ticket = await self.meter.admit(principal, body, route)  # limits and budgets, as for completions
            body, sent, cache_key, hit = await self._looked_up(request, "embeddings", body, route, ticket)
            if hit is not None:
                return self._from_cache(hit, rid, route, principal, "embeddings", tel)
            if route.serving == "adapter":
                forwarded = True
                with upstream_time(request):
                    response, adapter = await self.gateway.adapters.forward(
                        body.model, _PATHS["embeddings"], sent, stream=False)  # fmt: skip
                response = self.meter.watch(ticket, response, route, cache_key, adapter=adapter)  # settled, stored
                response.headers[REQUEST_ID_HEADER] = rid
                status = response.status_code
                self.gateway.record(rid, route, principal, endpoint="embeddings", status=status, adapter=adapter,
                                    trace_id=tel.trace_id)  # fmt: skip
                return response
            if route.serving == "llm":  # a vLLM pooling model through Ray Serve LLM: vLLM answers
                with upstream_time(request):
                    response, (prompt_tokens, _), _ = await llm_route.answer(
                        self.gateway, tel, route, body, endpoint="embeddings", rid=rid, priority="interactive",
                        principal=principal, settle=lambda *_, **__: None)  # fmt: skip
                self.meter.store(cache_key, route, response, prompt_tokens, 0)
                return response
            texts = body.texts()
            with upstream_time(request):
                vectors, read = await _result(route.embed.remote(texts, tel.carrier()), body.model)
            if body.dimensions is not None and vectors and len(vectors[0]) != body.dimensions:
                raise ValidationError(
                    f"dimensions: model {body.model!r} returns {len(vectors[0])} dimensions", param="dimensions"
                )
            prompt_tokens = read
            self.gateway.record(rid, route, principal, endpoint="embeddings", prompt_tokens=prompt_tokens,
                                inputs=len(texts), trace_id=tel.trace_id)  # fmt: skip
            reply = out.json_response(out.embeddings_body(body.model, vectors, body.encoding_format, prompt_tokens))
            self.meter.store(cache_key, route, reply, prompt_tokens, 0)
            return reply
        except BaseException as exc:
            status = _status(exc)
            self.refused(request, exc, principal)
            if forwarded and ticket is not None and isinstance(exc, asyncio.CancelledError):
                prompt_tokens = _abandoned(ticket)[0]
            raise
        finally:
            self.meter.settle(ticket, prompt_tokens, 0)  # once: an adapter's answer is settled already
            tel.finish(status, tokens_in=prompt_tokens)
