"""Models with ``engine: vllm``, served by Ray Serve LLM: one ``LLMServer`` deployment per Model.

``llm_application(model, engram)`` (in ``mnemos.relay._llm_server``) builds the Serve application
``model-<name>`` with Ray Serve LLM's own builder (``build_llm_deployment``) from an ``LLMConfig`` made from the Model:

- weights: each replica materializes ``spec.artifact`` from ENGRAM (verified by digest) and
  points ``model_loading_config.model_source`` at that folder before the engine starts;
- ``spec.runtime.params`` → vLLM engine kwargs (``dtype``, ``maxModelLen``, ``tensorParallel``,
  ``maxBatchSize`` → ``max_num_seqs``, ``gpuMemoryUtilization``, and ``engineKwargs`` unchanged,
  e.g. ``tool_call_parser: hermes``, ``enable_auto_tool_choice: true``);
- ``spec.replicas`` / ``spec.autoscaling`` → Serve's replicas and autoscaling;
- ``spec.resources`` → the engine's placement bundle (CPU, GPU) and ``accelerator_type``;
- ``spec.routing: prefix-aware`` → Ray Serve LLM's ``PrefixCacheAffinityRouter`` (through
  :class:`mnemos.relay._llm_router.PrefixRouter`, which reads the prompt of MNEMOS's calls).

The gateway sends the request it validated (``openai_schema``'s typed object, with every field
the client sent) to ``ModelLLMServer.openai`` (``mnemos.relay._llm_server``, imported only where
vLLM runs: the gateway never imports vLLM); the replica, which has vLLM, turns it into
vLLM's request once (priority and request id added) and runs Ray Serve LLM's own
``chat``/``completions``/``embeddings`` path. What comes back: the JSON body or the SSE events
as vLLM wrote them, then one :class:`Usage` for lineage.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from mnemos._actors import MODEL_DEPLOYMENT
from mnemos._deps import require
from mnemos.genome import Model
from mnemos.relay.model_server import replica_options, rollout_options

__all__ = ["DEPLOYMENT_NAME", "ENGINE_ENV", "PRIORITY", "Usage", "engine_kwargs", "llm_config"]

logger = logging.getLogger("mnemos.relay")

DEPLOYMENT_NAME = MODEL_DEPLOYMENT
PRIORITY = {"interactive": 0, "batch": 1}
"""vLLM's ``priority`` (lower is served first) for MNEMOS's request priorities."""
ENGINE_ENV = ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CACHE_ROOT", "HF_HUB_OFFLINE",
              "VLLM_NO_USAGE_STATS", "TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS")  # fmt: skip
"""Environment variables handed to the engine's replica when the controller has them (an allowlist)."""
_CPU_KV_CACHE_GIB = "1"
_PREFIX_ROUTER = "mnemos.relay._llm_router:PrefixRouter"
_LOCAL_WEIGHTS = "mnemos.relay._llm_server:LocalWeights"  # skips a download step that has nothing to fetch


@dataclass
class Usage:
    """Token counts of one request: the last item of ``ModelLLMServer.openai``'s stream."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


def engine_kwargs(model: Model) -> dict[str, Any]:
    """vLLM engine kwargs from ``spec.runtime.params`` (``engineKwargs`` last, so it wins)."""
    params = model.spec.runtime.params
    on_gpu = model.spec.resources.gpus > 0
    kwargs: dict[str, Any] = {
        "dtype": params.dtype or "auto",
        "max_model_len": params.max_model_len,
        "tensor_parallel_size": params.tensor_parallel,
        "max_num_seqs": params.max_batch_size if "max_batch_size" in params.model_fields_set else None,
        "gpu_memory_utilization": params.gpu_memory_utilization,
        "enforce_eager": None if on_gpu else True,  # CUDA graphs only pay off on a GPU
        "scheduling_policy": "priority",  # interactive (0) ahead of batch (1)
        "disable_log_stats": False,  # engine metrics (TTFT, TPOT, queue) for /metrics
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs.update(params.engine_kwargs)
    return kwargs


def _engine_env(on_gpu: bool) -> dict[str, str]:
    """The engine's environment: the allowlisted variables the controller has, and local defaults."""
    from mnemos.config import default_home

    env = {name: os.environ[name] for name in ENGINE_ENV if name in os.environ}
    env.setdefault("VLLM_CACHE_ROOT", str(default_home() / "cache" / "vllm"))
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")  # the engine loads a local folder (materialized by MNEMOS)
    if not on_gpu:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", _CPU_KV_CACHE_GIB)
    return env


def llm_config(model: Model, model_source: str | None = None) -> Any:
    """Ray Serve LLM's ``LLMConfig`` for ``model`` (``model_source``: its local folder, set by the replica)."""
    serve_llm = require("ray.serve.llm", why="engine: vllm (Ray Serve LLM)", param="spec.runtime.engine")
    LLMConfig = serve_llm.LLMConfig  # noqa: N806 - the class
    spec = model.spec
    res = spec.resources
    on_gpu = res.gpus > 0
    tp = spec.runtime.params.tensor_parallel
    bundle: dict[str, float] = {"CPU": res.cpus or 1.0}
    if on_gpu:  # one engine may take a fraction of a GPU (Ray Serve LLM tells vLLM); tensor-parallel workers whole ones
        bundle["GPU"] = res.gpus if tp == 1 and res.gpus < 1 else max(1.0, res.gpus / tp)
    deployment: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": 0},  # the replica only relays; the engine's bundle holds the CPUs
        "max_ongoing_requests": max(64, int(4 * (spec.autoscaling.target_ongoing_requests if spec.autoscaling else 8))),
        "health_check_period_s": 10.0,
        "graceful_shutdown_timeout_s": 20.0,
        **rollout_options(),  # the old generation serves until the new one is ready
    }
    deployment.update(replica_options(spec))
    if res.selector:  # Ray node labels for every bundle: the replica and its engine land on matching nodes
        deployment["placement_group_bundle_label_selector"] = [dict(res.selector)]
    if spec.routing == "prefix-aware":
        deployment["request_router_config"] = {"request_router_class": _PREFIX_ROUTER}
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": model.name, "model_source": model_source or model.name},
        "engine_kwargs": engine_kwargs(model),
        "placement_group_config": {"bundles": [bundle] * (tp if on_gpu else 1)},
        "deployment_config": deployment,
        "runtime_env": {"env_vars": _engine_env(on_gpu)},
        "log_engine_metrics": True,
    }
    if res.accelerator:
        config["accelerator_type"] = res.accelerator
    if len(config["placement_group_config"]["bundles"]) == 1:  # the engine runs where the replica put the weights
        config["callback_config"] = {"callback_class": _LOCAL_WEIGHTS}
    return LLMConfig(**config)
