"""The Serve deployment behind one served Model: a NEURON runtime in each replica.

``model_application(model, engram)`` turns a GENOME Model into a Serve application named
``model-<name>`` whose replicas, autoscaling and resources come from the Model's spec. Each
replica materializes the artifact (``mnemos.neuron.models.materialize``), starts the runtime and
serves ``complete`` (one answer), ``generate`` (a stream) and ``embed``. Callers send a
:class:`~mnemos.neuron.GenerationRequest` and get :class:`~mnemos.neuron.GenerationChunk` objects
back: the runtime's own types cross the Serve handle, with no reshaping on either side. A stream
stops when its consumer goes away: the gateway cancels the handle call and the runtime's
generator is closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from ray import serve
from ray.serve import Application

from mnemos._actors import MODEL_APP_PREFIX, MODEL_DEPLOYMENT, model_app
from mnemos.engram import Engram
from mnemos.errors import MnemosError, ValidationError
from mnemos.genome import Model
from mnemos.neuron import GenerationChunk, GenerationRequest, Runtime, runtime_class
from mnemos.soul.pii import redact, redact_messages
from mnemos.trace import metrics
from mnemos.trace.telemetry import log_through_serve, setup_tracing, start_span
from mnemos.trace.telemetry import span as span_of

__all__ = [
    "ROLLOUT_SURGE_PERCENT",
    "ModelServer",
    "app_name",
    "deployment_options",
    "model_application",
    "replica_options",
    "rollout_options",
]

logger = logging.getLogger("mnemos.relay")

DEPLOYMENT_NAME = MODEL_DEPLOYMENT
APP_PREFIX = MODEL_APP_PREFIX
ROLLOUT_SURGE_PERCENT = 100
"""Serve's ``max_surge_percent`` for model deployments: a new generation's replicas start next to
the old ones, which keep serving until their replacements are ready (no gap during a rollout)."""
# Engines that load nothing: the artifact is not materialized for them.
_NO_ARTIFACT = frozenset({"echo"})
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?i?B?\s*$")
_UNITS = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


app_name = model_app  # the Serve application serving a Model


def _memory_bytes(value: str) -> int:
    match = _MEMORY.match(value)
    if not match:
        raise ValidationError(f"spec.resources.memory: {value!r} is not a size like 512Mi or 16Gi",
                              param="spec.resources.memory")  # fmt: skip
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def deployment_options(model: Model) -> dict[str, Any]:
    """Serve options for the model's deployment, from ``spec.replicas/autoscaling/resources``."""
    spec = model.spec
    actor: dict[str, Any] = {"num_cpus": spec.resources.cpus}
    if spec.resources.gpus:
        actor["num_gpus"] = spec.resources.gpus
    if spec.resources.accelerator:
        actor["accelerator_type"] = spec.resources.accelerator
    if spec.resources.memory:
        actor["memory"] = _memory_bytes(spec.resources.memory)
    if spec.resources.selector:  # Ray node labels: Serve places (and re-places) replicas on matching nodes
        actor["label_selector"] = dict(spec.resources.selector)
    target = spec.autoscaling.target_ongoing_requests if spec.autoscaling else 8.0
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": actor,
        # The runtime queues and batches (interactive ahead of batch): let requests reach it.
        "max_ongoing_requests": max(64, int(4 * target)),
        "max_constructor_retry_count": 3,
        "health_check_period_s": 10.0,
        "graceful_shutdown_timeout_s": 10.0,
        **rollout_options(),
    }
    options.update(replica_options(spec))
    return options


@functools.cache
def rollout_options() -> dict[str, Any]:
    """Serve's ``max_surge_percent`` where it has one (Ray 2.60 and later). Older Serve replaces a
    deployment's replicas in place: its rollouts leave a gap, which the log says once."""
    if "max_surge_percent" in inspect.signature(serve.Deployment.options).parameters:
        return {"max_surge_percent": ROLLOUT_SURGE_PERCENT}
    logger.warning("this Ray Serve has no max_surge_percent (Ray 2.60+): a Model's rollout replaces its replicas "
                   "in place, so requests wait while the new generation starts")  # fmt: skip
    return {}


def replica_options(spec: Any) -> dict[str, Any]:
    """Serve's replica count for a Model spec: ``autoscaling_config`` when it autoscales, else ``num_replicas``."""
    if spec.autoscaling:
        return {"autoscaling_config": {
            "min_replicas": spec.autoscaling.min_replicas,
            "max_replicas": spec.autoscaling.max_replicas,
            "target_ongoing_requests": spec.autoscaling.target_ongoing_requests,
        }}  # fmt: skip
    return {"num_replicas": spec.replicas}


def model_application(model: Model, engram: Engram, cache_dir: str | None = None) -> Application:
    """The Serve application (not yet running) that serves ``model``."""
    deployment = ModelServer.options(**deployment_options(model))  # type: ignore[attr-defined]
    return deployment.bind(model.dump(), engram, cache_dir)


def _setup_tracing() -> None:
    """This replica's spans are ``mnemos-neuron`` (settings from the environment; defaults if unreadable)."""
    log_through_serve()
    try:
        setup_tracing(component="neuron")
    except MnemosError:
        logger.warning("tracing settings are not readable here; spans use the defaults", exc_info=True)


@serve.deployment(name=DEPLOYMENT_NAME, max_ongoing_requests=64)
class ModelServer:
    """One replica of a served Model.

    Args:
        model: the Model document (``Model.dump()``).
        engram: the store ``engram://`` artifacts are read from.
        cache_dir: where downloaded artifacts are kept (default ``$MNEMOS_HOME/cache/models``).
    """

    async def __init__(  # type: ignore[misc]  # Serve awaits async constructors
        self, model: dict[str, Any], engram: Engram, cache_dir: str | None = None
    ) -> None:
        self.model = Model.model_validate(model)
        spec = self.model.spec
        engine = self.engine = spec.runtime.engine
        _setup_tracing()
        cls = runtime_class(engine)
        path: str | None = None
        if engine not in _NO_ARTIFACT:
            from mnemos.neuron.models import materialize

            path = str(await asyncio.to_thread(materialize, self.model, engram, cache_dir))
        self.runtime: Runtime = cls(path, spec.runtime.params.model_dump(exclude_none=True))
        await self.runtime.start()
        self.kind = cls.kind
        self.max_tokens = spec.runtime.params.max_tokens
        self.redact = spec.policy.pii == "redact"  # every caller's prompts (mnemos.soul.pii)
        self.counters = {"requests": 0, "chunks": 0, "cancelled": 0, "active": 0}

    async def info(self) -> dict[str, Any]:
        """What the gateway needs to route to this model."""
        return {
            "name": self.model.name,
            "generation": self.model.generation,
            "fingerprint": self.model.serving_fingerprint(),
            "engine": self.model.spec.runtime.engine,
            "kind": self.kind,
            "digest": self.model.spec.artifact.sha256,
            "max_tokens": self.max_tokens,
        }

    async def stats(self) -> dict[str, int]:
        """Request, chunk and cancellation counters of this replica."""
        return dict(self.counters)

    async def complete(self, request: GenerationRequest) -> GenerationChunk:
        """Generate the whole answer: one chunk with the text, ``finish_reason`` and the token counts."""
        parts: list[str] = []
        answer = GenerationChunk(text="", finish_reason="stop")
        async for chunk in self._chunks(request):
            parts.append(chunk.text)
            answer.finish_reason = chunk.finish_reason or answer.finish_reason
            answer.prompt_tokens = chunk.prompt_tokens or answer.prompt_tokens
            answer.completion_tokens = chunk.completion_tokens or answer.completion_tokens
        answer.text = "".join(parts)
        return answer

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream the answer chunk by chunk; cancelling the call closes the runtime's generator."""
        async for chunk in self._chunks(request):
            yield chunk

    async def _chunks(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if self.redact:
            messages = redact_messages(request.messages) if request.messages is not None else None
            prompt = redact(request.prompt) if request.prompt else request.prompt
            request = dataclasses.replace(request, messages=messages, prompt=prompt)
        counters = self.counters
        counters["requests"] += 1
        counters["active"] += 1
        span = start_span("neuron.generate", carrier=request.trace, model=self.model.name, engine=self.engine)
        start = time.perf_counter()
        stream = self.runtime.generate(request)
        try:
            async for chunk in stream:
                counters["chunks"] += 1
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            counters["cancelled"] += 1
            span.set_attribute("mnemos.cancelled", True)
            raise
        finally:
            counters["active"] -= 1
            await stream.aclose()  # type: ignore[attr-defined]
            span.end()
            metrics.NEURON_GENERATE_SECONDS.observe(time.perf_counter() - start, model=self.model.name,
                                                    runtime=self.engine)  # fmt: skip

    async def embed(self, texts: list[str], trace: dict[str, str] | None = None) -> list[list[float]]:
        """One vector per text (``trace``: the caller's span carrier)."""
        return (await self.embed_counted(texts, trace))[0]

    async def embed_counted(self, texts: list[str], trace: dict[str, str] | None = None
                            ) -> tuple[list[list[float]], int]:  # fmt: skip
        """One vector per text, and the prompt tokens to charge (``Runtime.embed_counted``)."""
        self.counters["requests"] += 1
        if self.redact:
            texts = [redact(text) for text in texts]
        start = time.perf_counter()
        with span_of("neuron.embed", carrier=trace, model=self.model.name, engine=self.engine, texts=len(texts)):
            vectors, tokens = await self.runtime.embed_counted(texts)
        metrics.NEURON_GENERATE_SECONDS.observe(time.perf_counter() - start, model=self.model.name, runtime=self.engine)
        return vectors, tokens

    async def check_health(self) -> None:
        """Serve's health check: the runtime says whether it can serve."""
        if not await self.runtime.health():
            raise RuntimeError(f"runtime {self.model.spec.runtime.engine} of model {self.model.name} is unhealthy")

    async def __del__(self) -> None:
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            await runtime.stop()
