"""Dynamic batching in the transformers runtime: tokens/s at concurrency 8 vs 1 (tiny model, CPU).

    python benchmarks/neuron_batching.py [--quick]

The same runtime (maxBatchSize 8) serves the same requests twice in one run: one at a time,
then eight clients at once, each sending its next request as soon as the previous one ends
(so newcomers join a running batch). Greedy decoding of distinct chat prompts; tokens are the
completion tokens the runtime reports. Target: >= 3x the tokens/s at concurrency 8.

torch runs with ``--threads`` intra-op threads (default 1, as in a Serve replica given one CPU:
Ray sets ``OMP_NUM_THREADS`` to a worker's CPUs). On a busy 2-core machine two OpenMP threads
spin against other processes and every step gets tens of times slower, whatever the batch.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import target  # noqa: E402

from mnemos.neuron import GenerationRequest  # noqa: E402
from mnemos.neuron.models import init_tiny  # noqa: E402
from mnemos.neuron.runtimes.transformers import TransformersRuntime  # noqa: E402


def _request(i: int, max_tokens: int) -> GenerationRequest:
    text = f"Request {i}: tell me about the garden, the train and the weather." + " Please." * (i % 5)
    return GenerationRequest(messages=[{"role": "user", "content": text}], max_tokens=max_tokens, temperature=0.0)


async def _one(runtime: TransformersRuntime, req: GenerationRequest) -> int:
    tokens = 0
    async for chunk in runtime.generate(req):
        tokens = chunk.completion_tokens or tokens
    return tokens


async def _run(runtime: TransformersRuntime, requests: int, concurrency: int, max_tokens: int) -> tuple[int, float]:
    todo = iter(range(requests))

    async def client() -> int:
        return sum([await _one(runtime, _request(i, max_tokens)) for i in todo])

    start = time.perf_counter()
    counts = await asyncio.gather(*(client() for _ in range(concurrency)))
    return sum(counts), time.perf_counter() - start


async def main(quick: bool, threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    requests, max_tokens = (24, 32) if quick else (64, 64)
    with tempfile.TemporaryDirectory(prefix="mnemos-bench-") as tmp:
        runtime = TransformersRuntime(str(init_tiny(tmp)), {"maxBatchSize": 8, "batchWaitMs": 5})
        await runtime.start()
        try:
            await _run(runtime, 8, 8, 8)  # warm-up
            rates = {}
            for concurrency in (1, 8):
                steps = runtime.stats.steps
                tokens, seconds = await _run(runtime, requests, concurrency, max_tokens)
                rates[concurrency] = tokens / seconds
                per_step = tokens / max(1, runtime.stats.steps - steps)
                print(
                    f"concurrency {concurrency}: {requests} requests, {tokens} tokens in {seconds:.2f} s = "
                    f"{rates[concurrency]:.0f} tok/s ({per_step:.1f} tokens per forward pass)"
                )
        finally:
            await runtime.stop()
    return rates[8] / rates[1]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter requests (under a minute)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()
    ratio = asyncio.run(main(args.quick, args.threads))
    print(target("ratio", "neuron_batching_c8_vs_c1", ratio, ">=", 3))
