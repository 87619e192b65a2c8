"""What a SYNKRON ``infer`` step costs over calling the same model deployment directly.

    python benchmarks/pipeline_overhead.py [--quick] [--model tiny|echo]

One embedded platform (Ray, CORTEX, SYNKRON, RELAY), one model deployment (``tiny``: the tiny
random Llama-style chat model on the transformers runtime, dynamic batching; ``echo``: no model
time at all, so only overhead is left). The same prompts go through:

- ``direct``:   the model's Serve handle, ``complete`` calls at batch priority, the same
                concurrency as the step (the floor: what any client of the deployment gets);
- ``pipeline``: a pipeline run with one ``infer`` step over the same prompts (a JSONL file):
                run preparation, the CORTEX job, reading the input from ENGRAM, the calls,
                writing the results; cache off.

Rounds alternate between the two so that load from other processes falls on both alike; the
medians are compared. The infer step's time is the runner's (job submitted → outputs stored).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import free_port, target  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONCURRENCY = 32


def _prompts(n: int) -> list[dict[str, Any]]:
    base = [json.loads(line) for line in (REPO / "pipelines" / "data" / "prompts.jsonl").read_text().splitlines()]
    return [{"id": f"{i}", "prompt": f"{base[i % len(base)]['prompt']} (variant {i})"} for i in range(n)]


def _model_doc(kind: str, client: Any, home: Path) -> dict[str, Any]:
    if kind == "echo":
        return {"apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": "bench-model"},
                "spec": {"family": "echo", "version": "1", "artifact": {"uri": "file:///dev/null"},
                         "runtime": {"engine": "echo"}, "resources": {"cpus": 0.5}}}  # fmt: skip
    from mnemos.neuron.models import init_tiny, store_model

    digest = store_model(client.engram, init_tiny(home / "tiny", seed=0), "bench-model")
    return {"apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": "bench-model"},
            "spec": {"family": "llama", "version": "tiny", "artifact": {"uri": f"engram://{digest}", "sha256": digest},
                     "runtime": {"engine": "transformers", "params": {"maxBatchSize": 16, "batchWaitMs": 5,
                                                                      "dtype": "float32", "device": "cpu"}},
                     "resources": {"cpus": 1}}}  # fmt: skip


def _direct(records: list[dict[str, Any]], max_tokens: int) -> float:
    """Seconds to answer every record through the deployment's handle, ``CONCURRENCY`` in flight."""
    from ray import serve

    from mnemos.neuron import GenerationRequest
    from mnemos.synkron._models import bounded_map, run_async

    handle = serve.get_app_handle("model-bench-model")

    async def one(i: int, rec: dict[str, Any]) -> Any:
        request = GenerationRequest(prompt=rec["prompt"], max_tokens=max_tokens, temperature=0.7, priority="batch")
        return await handle.complete.remote(request)

    started = time.perf_counter()
    run_async(lambda: bounded_map(one, records, CONCURRENCY))
    return time.perf_counter() - started


def _pipeline_doc(max_tokens: int) -> dict[str, Any]:
    return {
        "apiVersion": "synkron.mnemos.dev/v1",
        "kind": "Pipeline",
        "metadata": {"name": "bench-infer"},
        "spec": {
            "steps": [
                {
                    "name": "infer",
                    "modelRef": "bench-model",
                    "input": "prompts.jsonl",
                    "params": {"max_tokens": max_tokens, "temperature": 0.7, "concurrency": CONCURRENCY},
                    "outputs": [{"name": "results"}],
                }
            ]
        },  # fmt: skip
    }


def _pipeline(client: Any, path: Path) -> tuple[float, float]:
    """``(infer step seconds, whole run seconds)`` of one uncached run."""
    started = time.perf_counter()
    run = client.pipelines.run(path, progress=False, cache=False)
    total = time.perf_counter() - started
    state = run.state()
    if state["status"] != "succeeded":
        raise SystemExit(f"pipeline run failed: {state['error']}")
    step = state["steps"]["infer"]
    return step["finished"] - step["started"], total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer prompts and rounds (under a minute)")
    parser.add_argument("--model", choices=("tiny", "echo"), default="tiny")
    args = parser.parse_args()
    n, rounds, max_tokens = (128, 3, 8) if args.quick else (512, 5, 16)

    home = Path(tempfile.mkdtemp(prefix="mnemos-bench-pipeline-"))
    os.environ["MNEMOS_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import ray

    import mnemos
    from mnemos.config import load_settings
    from mnemos.cortex import ensure as ensure_cortex
    from mnemos.relay import ensure as ensure_relay
    from mnemos.relay import stop as stop_relay
    from mnemos.synkron.service import ensure as ensure_synkron

    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    settings = load_settings(relay={"port": free_port(), "auth": False})
    client = mnemos.connect(settings=settings)
    try:
        ensure_cortex(settings, client.engram)
        ensure_synkron(settings, client.engram)
        controller = ensure_relay(settings, client.engram)
        client.apply(_model_doc(args.model, client, home))
        ray.get(controller.wait_synced.remote(None, 900))
        records = _prompts(n)
        data = home / "bench"
        data.mkdir()
        (data / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        path = data / "pipeline.yaml"
        path.write_text(json.dumps(_pipeline_doc(max_tokens)))
        _direct(records[:32], max_tokens)  # warm up the replica and the handle
        _pipeline(client, path)  # warm up CORTEX's workers and the runner
        direct, step, total = [], [], []
        for _ in range(rounds):
            direct.append(_direct(records, max_tokens))
            s, t = _pipeline(client, path)
            step.append(s)
            total.append(t)
        d, s, t = statistics.median(direct), statistics.median(step), statistics.median(total)
        print(
            f"model {args.model} · {n} prompts · max_tokens {max_tokens} · concurrency {CONCURRENCY} · {rounds} rounds"
        )
        print(f"direct (Serve handle)      {n / d:8.1f} items/s  ({d:.2f}s)")
        print(f"pipeline infer step        {n / s:8.1f} items/s  ({s:.2f}s)")
        print(f"pipeline run (end to end)  {n / t:8.1f} items/s  ({t:.2f}s)")
        print(f"info ratio pipeline_run_vs_direct {d / t:.2f}   (no target: the whole run, planning included)")
        print(target("ratio", "pipeline_infer_vs_direct", d / s, ">=", 0.8))
    finally:
        try:
            stop_relay(shutdown_serve=True)
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
