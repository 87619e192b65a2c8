"""The Serve deployment class of a vLLM Model: Ray Serve LLM's ``LLMServer`` plus what MNEMOS adds.

Imported only where vLLM runs (model replicas, and the relay controller when it builds the
application): importing it imports vLLM. See :mod:`mnemos.relay.llm`.
"""

from __future__ import annotations

import asyncio
import json
import re
import types
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

from ray.llm._internal.common.callbacks.base import CallbackBase  # LLMConfig.callback_config's base class
from ray.serve import Application
from ray.serve.llm.deployment import LLMServer

from mnemos._deps import require
from mnemos.engram import Engram
from mnemos.errors import (
    BadRequestError,
    ContextLengthError,
    MnemosError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from mnemos.genome import Model
from mnemos.neuron import GenerationChunk, GenerationRequest
from mnemos.relay._errors import client_path, internal_error
from mnemos.relay._responses import aclose
from mnemos.relay.llm import DEPLOYMENT_NAME, PRIORITY, Usage
from mnemos.relay.llm import llm_config as build_llm_config
from mnemos.relay.model_status import artifact_digest
from mnemos.relay.openai_schema import unread_extras
from mnemos.soul.pii import redact_request

__all__ = ["LocalWeights", "ModelLLMServer", "llm_application"]

_KINDS = ("chat", "completions", "embeddings")


_NAMED = re.compile(r"^([a-z_][a-z0-9_.]*)\b|`([a-z_][a-z0-9_.]*)`")


def _named_param(message: str, sent: Collection[str]) -> str | None:
    """The field an engine's message names when it gives no parameter ("stop cannot contain an
    empty string."): its first word or a quoted name, when it is one of the fields the client sent."""
    for match in _NAMED.finditer(message):
        name = (match.group(1) or match.group(2)).rstrip(".")
        if name.split(".")[0] in sent:
            return name
    return None


_PROMPT_FIELDS = ("messages", "prompt", "input")
_SCHEMA_FIELDS = ("response_format", "structured_outputs", "tools")


def _grammar_field(message: str, sent: Collection[str]) -> str | None:
    """The field whose schema vLLM's structured output could not build ("Grammar error: …",
    "Invalid grammar specification: …"), when the client sent one of them."""
    if "grammar" not in message.lower():
        return None
    return next((f for f in _SCHEMA_FIELDS if f in sent), None)


def _too_long(message: str, param: Any, sent: Collection[str]) -> ContextLengthError | None:
    """vLLM's refusal of a prompt past the model's context (its ``parameter`` is ``input_tokens``
    or ``input_text``, no field of the request) as OpenAI's ``context_length_exceeded`` naming the
    field that holds the prompt."""
    if param not in ("input_tokens", "input_text") and "maximum context length" not in message:
        return None
    return ContextLengthError(message, param=next((f for f in _PROMPT_FIELDS if f in sent), "messages"))


def _engine_error(error: Any, sent: Collection[str] = (), request_id: str = "") -> MnemosError:
    """A vLLM ``ErrorResponse`` as one of our errors (its status and parameter kept); a 5xx other
    than 503 is an opaque internal error, its message logged here."""
    info = getattr(error, "error", error)
    message = str(getattr(info, "message", "") or "the engine refused the request")
    if (too_long := _too_long(message, getattr(info, "param", None), sent)) is not None:
        return too_long
    param = getattr(info, "param", None) or _named_param(message, sent) or _grammar_field(message, sent)
    if param is None and "does not support the" in message:  # e.g. /v1/embeddings of a generating model
        param = "model"
    code = int(getattr(info, "code", 500) or 500)
    if code == 404:
        return NotFoundError(message, param=param or "model")
    if code == 422:
        return ValidationError(message, param=param)
    if 400 <= code < 500:
        return BadRequestError(message, param=param)
    if code == 503:
        return UnavailableError(message)
    return internal_error(None, f"request {request_id or '(no id)'} in vLLM", f"vLLM answered {code}: {message}")


def _client_error(exc: Exception, sent: Collection[str] = ()) -> MnemosError:
    """A vLLM ``VLLMClientError`` (the request's fault) as a 4xx naming the parameter when vLLM
    does, or when its message starts with a field the client sent."""
    message = str(exc.args[0]) if exc.args else str(exc)
    if (too_long := _too_long(message, getattr(exc, "parameter", None), sent)) is not None:
        return too_long
    param = getattr(exc, "parameter", None) or _named_param(message, sent) or _grammar_field(message, sent)
    return ValidationError(message, param=param) if param else BadRequestError(message)


def _validation(exc: Exception, data: Any) -> ValidationError:
    """vLLM's pydantic error on the request as a 422 naming the first field as the client's JSON
    path in ``data`` (pydantic's class names of union members left out)."""
    errors: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
    if errors:
        first = errors[0]
        path = client_path(first.get("loc", ()), data)
        return ValidationError(f"{path}: {first.get('msg', 'invalid')}" if path else str(first.get("msg")),
                               param=path or None)  # fmt: skip
    return ValidationError(str(exc))


def _usage_of(body: Any) -> Usage:
    usage = getattr(body, "usage", None)
    if usage is None:
        return Usage()
    return Usage(int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))


def _protocol() -> Any:
    return require("ray.llm._internal.serve.core.configs.openai_api_models", why="engine: vllm (Ray Serve LLM)",
                   param="spec.runtime.engine")  # fmt: skip


_OPENING_ITEMS = 2
"""Items of a stream sent as they come before Ray Serve LLM's batching takes over: a chat's role
chunk and first token (a completion's first two tokens)."""


async def opening_first(generator: AsyncIterator[Any], batched: Callable[[AsyncIterator[Any]], AsyncIterator[Any]]
                        ) -> AsyncIterator[list[Any]]:  # fmt: skip
    """``generator``'s first ``_OPENING_ITEMS`` items, each alone as it comes, then the rest as
    ``batched`` groups it (Ray Serve LLM's ``Batcher``: what arrived in each interval, 50 ms by
    default). The batcher waits out its first interval before it sends anything, so every stream's
    first token waited up to 50 ms for no reason; batching the rest keeps what it is for (fewer,
    larger messages between replicas while tokens flow)."""
    try:
        for _ in range(_OPENING_ITEMS):
            try:
                item = await generator.__anext__()
            except StopAsyncIteration:
                return
            yield [item]
    except BaseException:  # the client went away (or the engine failed) before the batcher took over
        await aclose(generator)
        raise
    batches = batched(generator)  # from here the batcher owns the generator (its reader closes it)
    try:
        async for batch in batches:
            yield batch
    finally:
        await aclose(batches)


class ModelLLMServer(LLMServer):  # type: ignore[misc]
    """Ray Serve LLM's ``LLMServer`` for one MNEMOS Model: ENGRAM weights, model info, the gateway's call.

    Args:
        llm_config: from ``mnemos.relay.llm.llm_config`` (made again here, with the local folder as source).
        model: the Model document (``Model.dump()``).
        engram: the store ``engram://`` artifacts are read from.
        cache_dir: where downloaded artifacts are kept (default ``$MNEMOS_HOME/cache/models``).
    """

    async def __init__(  # type: ignore[misc]  # Serve awaits async constructors
        self, llm_config: Any, *, model: dict[str, Any], engram: Engram, cache_dir: str | None = None
    ) -> None:
        from mnemos.neuron.models import materialize

        self.model = Model.model_validate(model)
        self.redact = self.model.spec.policy.pii == "redact"  # every caller's prompts (mnemos.soul.pii)
        folder = await asyncio.to_thread(materialize, self.model, engram, cache_dir)
        self.digest = await asyncio.to_thread(artifact_digest, self.model, engram)
        # Built again from the Model with the local folder: the controller's copy caches its engine config.
        llm_config = build_llm_config(self.model, model_source=str(folder))
        self._openai = _protocol()
        self.counters = {"requests": 0, "cancelled": 0}
        await super().__init__(llm_config)
        from mnemos.relay._llm_metrics import attach  # imports vLLM: here, not where the application is built

        attach(self.engine, self.model.name)  # vLLM's engine statistics on MNEMOS's /metrics
        self.kind = await self._kind()

    async def _kind(self) -> str:
        """``embed`` for a pooling model (``engineKwargs: {runner: pooling}``), else ``generate``.

        vLLM says which tasks the loaded model supports; the gateway routes ``/v1/embeddings`` to an
        ``embed`` model and refuses it chat and completions (400 naming ``model``).
        """
        client: Any = getattr(self.engine, "_engine_client", None)
        tasks = await client.get_supported_tasks() if hasattr(client, "get_supported_tasks") else ("generate",)
        return "embed" if "embed" in tasks and "generate" not in tasks else "generate"

    def _batch_output_stream(self, generator: AsyncIterator[Any]) -> AsyncIterator[list[Any]]:
        """Ray Serve LLM's batched stream, its opening sent at once (:func:`opening_first`)."""
        return opening_first(generator, super()._batch_output_stream)

    async def info(self) -> dict[str, Any]:
        """What the gateway and pipelines need to route to this model."""
        spec = self.model.spec
        return {
            "name": self.model.name,
            "generation": self.model.generation,
            "fingerprint": self.model.serving_fingerprint(),
            "engine": spec.runtime.engine,
            "serving": "llm",
            "kind": self.kind,
            "digest": self.digest,
            "max_tokens": spec.runtime.params.max_tokens,
        }

    async def stats(self) -> dict[str, int]:
        """Request and cancellation counters of this replica."""
        return dict(self.counters)

    def _request(self, kind: str, body: Any, priority: str, request_id: str, force_usage: bool) -> Any:
        models = self._openai
        data = body.model_dump(exclude_unset=True) if hasattr(body, "model_dump") else dict(body)
        for extra in unread_extras(body):  # the client's other fields reach vLLM through an allowlist
            data.pop(extra, None)
        data.pop("best_of", None)  # at most 1 here (openai_schema): no field of vLLM's request
        if self.redact:
            data = redact_request(data)
        if kind == "embeddings":
            cls = models.EmbeddingChatRequest if "messages" in data else models.EmbeddingCompletionRequest
        else:
            cls = models.ChatCompletionRequest if kind == "chat" else models.CompletionRequest
            data["priority"] = PRIORITY.get(priority, 0)
            if data.get("stream") and force_usage:
                data["stream_options"] = {**(data.get("stream_options") or {}), "include_usage": True}
        if request_id:  # else vLLM makes one (an empty id would be shared by concurrent requests)
            # vLLM prefixes the id it answers with (chatcmpl-, cmpl-): the client sees the gateway's id, once
            data["request_id"] = request_id.removeprefix("chatcmpl-").removeprefix("cmpl-")
        from vllm.exceptions import VLLMClientError

        try:
            return cls.model_validate(data)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise _validation(exc, data) from None
        except VLLMClientError as exc:  # vLLM's own checks (e.g. a tool_choice naming no tool)
            raise _client_error(exc, data) from None

    async def openai(self, kind: str, body: Any, priority: str = "interactive", request_id: str = "",
                     headers: dict[str, str] | None = None) -> AsyncIterator[bytes | Usage]:  # fmt: skip
        """Serve one OpenAI request (``kind``: chat, completions, embeddings) through Ray Serve LLM.

        Yields the JSON body (or the SSE events, as vLLM wrote them), then one :class:`Usage`.
        A stream always counts tokens: when the client did not ask for the usage chunk it is
        counted here and not sent.

        Raises:
            ValidationError / BadRequestError / NotFoundError: the engine refused the request.
        """
        if kind not in _KINDS:
            raise ValidationError(f"unknown request kind {kind!r}", param="kind")
        from ray.llm._internal.serve.core.protocol import RawRequestInfo

        wants_usage = bool(getattr(getattr(body, "stream_options", None), "include_usage", False))
        request = self._request(kind, body, priority, request_id, force_usage=True)
        sent = set(body) if isinstance(body, dict) else {*body.model_fields_set, *(body.model_extra or ())}
        raw = RawRequestInfo(headers=dict(headers or {}))
        self.counters["requests"] += 1
        from vllm.exceptions import VLLMClientError

        try:
            stream = await getattr(super(), kind)(request, raw)
        except VLLMClientError as exc:
            raise _client_error(exc, sent) from None
        usage = Usage()
        opening: list[str] | None = []  # a stream's role events, held until something else comes (then None)
        try:
            async for item in stream:
                batch = item if isinstance(item, list) else [item]
                out: list[str] = []
                for piece in batch:
                    if isinstance(piece, self._openai.ErrorResponse):
                        raise _engine_error(piece, sent, request_id)
                    if isinstance(piece, str):
                        if (error := _error_event(piece)) is not None:  # vLLM's own error event: our error
                            raise _engine_error(error, sent, request_id)  # (a status, before anything is sent)
                        if '"choices":[]' in piece and '"usage":{' in piece:
                            usage = _stream_usage(piece, usage)
                            if not wants_usage:
                                continue
                        if opening is not None and _role_only(piece):
                            opening.append(piece)
                            continue
                        out += opening or ()
                        opening = None
                        out.append(piece)
                    else:  # a whole response (not streamed)
                        usage = _usage_of(piece)
                        yield piece.model_dump_json().encode()
                if out:
                    yield "".join(out).encode()
            if opening:
                yield "".join(opening).encode()
        except VLLMClientError as exc:  # a request vLLM refuses (e.g. a tool_choice naming no tool): 4xx
            raise _client_error(exc, sent) from None
        except (asyncio.CancelledError, GeneratorExit):
            self.counters["cancelled"] += 1
            raise
        finally:
            await aclose(stream)
        yield usage

    async def embed(self, texts: list[str], trace: dict[str, str] | None = None) -> list[list[float]]:
        """One vector per text, for pipelines (``index`` steps, spaces): vLLM's ``/v1/embeddings``."""
        return (await self.embed_counted(texts, trace))[0]

    async def embed_counted(self, texts: list[str], trace: dict[str, str] | None = None
                            ) -> tuple[list[list[float]], int]:  # fmt: skip
        """The vectors and vLLM's count of the prompt tokens (``ModelServer.embed_counted``'s contract)."""
        body, usage = b"", Usage()
        async for item in self.openai("embeddings", {"model": self.model.name, "input": list(texts)}, "batch",
                                      headers=trace):  # fmt: skip
            if isinstance(item, bytes):
                body += item
            else:
                usage = item
        vectors = [list(d["embedding"]) for d in sorted(json.loads(body)["data"], key=lambda d: d["index"])]
        return vectors, usage.prompt_tokens

    async def complete(self, request: GenerationRequest) -> GenerationChunk:
        """A pipeline's generation (``infer`` steps): the whole answer as one chunk with its token counts."""
        kind = "chat" if request.messages is not None else "completions"
        body = b""
        async for item in self.openai(kind, _openai_body(self.model.name, request), request.priority,
                                      request.request_id, headers=request.trace):  # fmt: skip
            if isinstance(item, bytes):
                body += item
        doc = json.loads(body)
        choice = doc["choices"][0]
        text = choice["message"]["content"] if kind == "chat" else choice["text"]
        usage = doc.get("usage") or {}
        return GenerationChunk(text=text or "", finish_reason=choice.get("finish_reason") or "stop",
                               prompt_tokens=int(usage.get("prompt_tokens", 0)),
                               completion_tokens=int(usage.get("completion_tokens", 0)))  # fmt: skip


def _openai_body(model: str, request: GenerationRequest) -> dict[str, Any]:
    """The OpenAI body of ``request``: sampling fields left at their defaults are left out, so that
    vLLM applies the model's own generation defaults, as for an OpenAI request that omits them."""
    body: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens}
    if request.messages is not None:
        body["messages"] = request.messages
    else:
        body["prompt"] = request.prompt or ""
    if request.temperature != 1.0:
        body["temperature"] = request.temperature
    if request.top_p != 1.0:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = request.stop
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def _event_data(piece: str) -> Any:
    """The JSON of an SSE event ``data: {...}`` (one event, as vLLM yields them), else None."""
    if not piece.startswith("data: {"):
        return None
    try:
        return json.loads(piece[6:])
    except ValueError:
        return None


def _error_event(piece: str) -> Any:
    """vLLM's error event in a stream (``data: {"error": {...}}``, e.g. a grammar its structured
    output cannot build) as an object ``_engine_error`` reads, else None."""
    if not piece.startswith('data: {"error"'):
        return None
    data = _event_data(piece)
    info = data.get("error") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        return None
    code = info.get("code")
    return types.SimpleNamespace(message=info.get("message"), param=info.get("param"),
                                 code=code if isinstance(code, int) else 500)  # fmt: skip


def _role_only(piece: str) -> bool:
    """Whether ``piece`` is a chat stream's opening event: each choice's delta only its role."""
    if '"role"' not in piece:
        return False
    data = _event_data(piece)
    choices = data.get("choices") if isinstance(data, dict) else None
    return bool(choices) and all(
        isinstance(c, dict) and not c.get("finish_reason") and not c.get("logprobs")
        and isinstance(c.get("delta"), dict) and not any(v for k, v in c["delta"].items() if k != "role")
        for c in choices
    )  # fmt: skip


def _stream_usage(piece: str, current: Usage) -> Usage:
    """The token counts in a stream's usage chunk (``data: {...}``)."""
    for line in piece.splitlines():
        if line.startswith("data: {") and '"usage":{' in line:
            try:
                usage = json.loads(line[6:]).get("usage") or {}
            except ValueError:
                continue
            return Usage(int(usage.get("prompt_tokens", 0) or 0), int(usage.get("completion_tokens", 0) or 0))
    return current


class LocalWeights(CallbackBase):  # type: ignore[misc]
    """Ray Serve LLM's node initialization, skipped for a one-bundle engine.

    That step runs a task on each node of the placement group to download the weights; the task's
    fresh worker imports vLLM first (about 35 s on 2 cores) and, for the local folder it is given,
    downloads nothing. The replica has already materialized the weights from ENGRAM, verified by
    digest, on its node, and a one-bundle engine runs in the replica's bundle, on that node.
    """

    async def on_before_node_init(self) -> None:
        self.ctx.run_init_node = False


def llm_application(model: Model, engram: Engram, cache_dir: str | None = None) -> Application:
    """The Serve application (not yet running) that serves ``model`` with Ray Serve LLM."""
    from ray.serve.llm import build_llm_deployment

    return build_llm_deployment(
        build_llm_config(model),
        deployment_cls=ModelLLMServer,
        bind_kwargs={"model": model.dump(), "engram": engram, "cache_dir": cache_dir},
        override_serve_options={"name": DEPLOYMENT_NAME},
    )
