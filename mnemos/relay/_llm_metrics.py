"""vLLM's engine metrics on MNEMOS's ``/metrics``, with a ``model`` label.

vLLM measures each engine step (time to first token, time per output token, tokens, queue) and
hands the numbers to its stat loggers. :class:`EngineMetrics` is one more stat logger, added to
the engine of each ``ModelLLMServer`` replica (:func:`attach`): it records into TRACE's metrics
(:mod:`mnemos.trace.metrics`), which every process pushes to the cluster-wide aggregator that
``GET /metrics`` renders. vLLM's own loggers (Ray's Prometheus exporter, its log line) keep running.

Imported only in model replicas (it imports vLLM).
"""

from __future__ import annotations

import logging
from typing import Any

from vllm.v1.metrics.loggers import StatLoggerBase

from mnemos.trace import metrics

__all__ = [
    "ENGINE_KV_CACHE_USAGE", "ENGINE_QUEUE_SECONDS", "ENGINE_REQUESTS", "ENGINE_TOKENS", "ENGINE_TPOT_SECONDS",
    "ENGINE_TTFT_SECONDS", "EngineMetrics", "attach",
]  # fmt: skip

logger = logging.getLogger("mnemos.relay")

_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)

ENGINE_TTFT_SECONDS = metrics.histogram(
    "mnemos_model_time_to_first_token_seconds", "vLLM engine: seconds from arrival to the first output token.",
    ("model",))  # fmt: skip
ENGINE_TPOT_SECONDS = metrics.histogram(
    "mnemos_model_time_per_output_token_seconds", "vLLM engine: seconds between two output tokens of a request.",
    ("model",), _TOKEN_BUCKETS)  # fmt: skip
ENGINE_QUEUE_SECONDS = metrics.histogram(
    "mnemos_model_queue_seconds", "vLLM engine: seconds a finished request waited in the queue.", ("model",))
ENGINE_TOKENS = metrics.counter(
    "mnemos_model_tokens_total", "vLLM engine: prompt tokens computed and tokens generated.", ("model", "kind"))
ENGINE_REQUESTS = metrics.gauge(
    "mnemos_model_requests", "vLLM engine: requests running and waiting in the queue now.", ("model", "state"))
ENGINE_KV_CACHE_USAGE = metrics.gauge(
    "mnemos_model_kv_cache_usage_ratio", "vLLM engine: fraction of the KV cache in use (0-1).", ("model",))


class EngineMetrics(StatLoggerBase):  # type: ignore[misc]
    """A vLLM stat logger that records one engine's step statistics under ``model``.

    Args:
        model: the Model's name (the ``model`` label). Gauges are this replica's levels; the
            aggregator sums the live replicas.
    """

    def __init__(self, model: str) -> None:  # vLLM's (vllm_config, engine_index) are not needed
        self.model = model

    def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None,
               engine_idx: int = 0) -> None:  # fmt: skip
        """One engine step: latencies and tokens of the step, queue and cache levels after it."""
        model = self.model
        if iteration_stats is not None:
            for seconds in iteration_stats.time_to_first_tokens_iter:
                ENGINE_TTFT_SECONDS.observe(seconds, model=model)
            for seconds in iteration_stats.inter_token_latencies_iter:
                ENGINE_TPOT_SECONDS.observe(seconds, model=model)
            for finished in iteration_stats.finished_requests:
                ENGINE_QUEUE_SECONDS.observe(finished.queued_time, model=model)
            prompt = int(iteration_stats.num_prompt_tokens)
            if prompt:
                ENGINE_TOKENS.inc(prompt, model=model, kind="prompt")
            if iteration_stats.num_generation_tokens:
                ENGINE_TOKENS.inc(int(iteration_stats.num_generation_tokens), model=model, kind="generation")
        if scheduler_stats is not None:
            ENGINE_REQUESTS.set(scheduler_stats.num_running_reqs, model=model, state="running")
            ENGINE_REQUESTS.set(scheduler_stats.num_waiting_reqs, model=model, state="waiting")
            ENGINE_KV_CACHE_USAGE.set(scheduler_stats.kv_cache_usage, model=model)

    def log_engine_initialized(self) -> None:
        """Nothing to log: the relay controller reports the model Ready."""

    def record_admission_rejection(self, reason: str) -> None:
        """Rejections are counted by the gateway (its 4xx/5xx responses)."""


def attach(engine: Any, model: str) -> bool:
    """Add :class:`EngineMetrics` to the stat loggers of a started Ray Serve LLM ``engine``.

    Returns False (and logs why) when this vLLM keeps no stat loggers (``disable_log_stats``).
    """
    client = getattr(engine, "_engine_client", None)
    manager = getattr(client, "logger_manager", None)
    loggers = getattr(manager, "stat_loggers", None)
    if not isinstance(loggers, list):
        logger.warning("model %s: vLLM keeps no stat loggers here; engine metrics are off", model)
        return False
    loggers.append(EngineMetrics(model))
    return True
