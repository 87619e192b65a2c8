"""MNEMOS serving a vLLM model against what its users would pick instead: bare Ray Serve LLM, bare vLLM.

    python benchmarks/serving_peers.py [--quick]

The same tiny Llama model (made locally, float32, max_model_len 256, eager mode), the same
machine, the same run, three ways:

- ``mnemos``: the MNEMOS gateway as deployed (API-key auth, RBAC, rate limiter, validation,
  lineage, tracing on; every control-plane actor up, as ``mnemos up`` starts them) → the Model's
  Ray Serve LLM deployment (``engine: vllm``), on Serve as ``mnemos up`` runs it: HAProxy ingress,
  gRPC between replicas (``--no-high-throughput``: Serve's default proxy);
- ``rayllm``: Ray Serve LLM's own ``build_openai_app`` on the same model, same Ray cluster and
  Serve instance (started once, so in the same Serve mode);
- ``vllm``:   vLLM's own OpenAI server (``python -m vllm.entrypoints.openai.api_server``) on 127.0.0.1.

Each round sends, to each target in turn, 8 concurrent streams of chat completions (greedy, the
same prompt, ``stream_options.include_usage``): output tokens per second over the round, and
the time to the first token of each stream. Rounds alternate between targets so that load from
other processes falls on all of them alike, and the order rotates each round so that no target
always goes first; before the measured rounds each target serves one unmeasured round (an engine
that has just started, or a path never taken, pays one-time costs: lazy imports, the chat
template's compilation, Serve's first routing). Exits 1 when a target line is missed.

``--gpu``: the three engines on one CUDA GPU (a quarter of its memory each); eager mode everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import deployed_serve_env, free_port, platform_up, target  # noqa: E402

MODEL = "bench-tiny"
STREAMS = 8
MAX_TOKENS = 64
MAX_MODEL_LEN = 256
ENGINE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
              "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
START_TIMEOUT_S = 900.0
GPU_SHARE = 0.25


def _body() -> bytes:
    return json.dumps({
        "model": MODEL, "messages": [{"role": "user", "content": "Tell me a long story about the sea."}],
        "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
    }).encode()  # fmt: skip


async def _stream(client: Any, url: str, headers: dict[str, str]) -> tuple[float, int]:
    """One streamed chat completion: ``(seconds to the first content chunk, completion tokens)``."""
    start = time.perf_counter()
    ttft, tokens = -1.0, 0
    headers = {"Content-Type": "application/json", **headers}
    async with client.stream("POST", url, content=_body(), headers=headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(f"{url}: {event['error']}")
            if ttft < 0 and any((c.get("delta") or {}).get("content") for c in event.get("choices") or ()):
                ttft = time.perf_counter() - start
            if event.get("usage"):
                tokens = int(event["usage"]["completion_tokens"])
    if tokens == 0:
        raise RuntimeError(f"{url}: the stream carried no usage")
    return (ttft if ttft >= 0 else time.perf_counter() - start), tokens


async def _round(url: str, headers: dict[str, str], per_stream: int) -> tuple[float, list[float]]:
    """``STREAMS`` concurrent clients, ``per_stream`` requests each: (output tokens/s, TTFTs)."""
    import httpx

    limits = httpx.Limits(max_connections=STREAMS, max_keepalive_connections=STREAMS)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def worker() -> list[tuple[float, int]]:
            return [await _stream(client, url, headers) for _ in range(per_stream)]

        await _stream(client, url, headers)  # warm the connection
        start = time.perf_counter()
        results = await asyncio.gather(*(worker() for _ in range(STREAMS)))
        elapsed = time.perf_counter() - start
    flat = [r for rs in results for r in rs]
    return sum(t for _, t in flat) / elapsed, [ttft for ttft, _ in flat]


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the vLLM server exited ({proc.returncode})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"the vLLM server was not ready within {timeout:.0f}s")


def _vllm_server(folder: Path, home: str, gpu: bool) -> tuple[subprocess.Popen[bytes], int, Any]:
    port = free_port()
    env = {**os.environ, **ENGINE_ENV, "VLLM_CACHE_ROOT": os.path.join(home, "vllm-cache")}
    log = open(os.path.join(home, "vllm-server.log"), "wb")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
         "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
         "--max-model-len", str(MAX_MODEL_LEN), "--enforce-eager",
         *(["--gpu-memory-utilization", str(GPU_SHARE)] if gpu else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    return proc, port, log


def _model_doc(gpu: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"dtype": "float32", "maxModelLen": MAX_MODEL_LEN, "maxTokens": MAX_TOKENS,
                              "engineKwargs": {"enforce_eager": True}}  # fmt: skip
    if gpu:
        params["gpuMemoryUtilization"] = GPU_SHARE
    return {
        "apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": MODEL},
        "spec": {"family": "llama", "version": "1", "artifact": {"uri": f"engram://models/{MODEL}"},
                 "runtime": {"engine": "vllm", "params": params},
                 "resources": {"cpus": 1, "gpus": GPU_SHARE} if gpu else {"cpus": 1}},
    }  # fmt: skip


def _rayllm_app(folder: Path, gpu: bool) -> Any:
    from ray.serve.llm import LLMConfig, build_openai_app

    engine = {"dtype": "float32", "max_model_len": MAX_MODEL_LEN, "enforce_eager": True}
    config = LLMConfig(
        model_loading_config={"model_id": MODEL, "model_source": str(folder)},
        engine_kwargs={**engine, "gpu_memory_utilization": GPU_SHARE} if gpu else engine,
        placement_group_config={"bundles": [{"CPU": 1, "GPU": GPU_SHARE} if gpu else {"CPU": 1}]},
        deployment_config={"num_replicas": 1},
        runtime_env={"env_vars": {**ENGINE_ENV, "VLLM_CACHE_ROOT": os.environ["VLLM_CACHE_ROOT"]}},
    )
    return build_openai_app({"llm_configs": [config]})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a few minutes, engine starts included)")
    parser.add_argument("--gpu", action="store_true", help="run the three engines on the CUDA GPU")
    parser.add_argument("--no-high-throughput", action="store_true", help="Serve in its default mode")
    opts = parser.parse_args()
    rounds, per_stream = (3, 2) if opts.quick else (6, 4)

    home = os.environ.setdefault("MNEMOS_HOME", tempfile.mkdtemp(prefix="mnemos-bench-serving-"))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("VLLM_CACHE_ROOT", os.path.join(home, "vllm-cache"))
    for name, value in ENGINE_ENV.items():
        os.environ.setdefault(name, value)
    if not opts.no_high_throughput:
        deployed_serve_env(home)
    import ray
    from ray import serve

    import mnemos
    from mnemos.config import load_settings
    from mnemos.neuron.models import init_tiny, store_model
    from mnemos.relay import stop
    from mnemos.soul.store import IdentityStore

    folder = init_tiny(Path(home) / "tiny", seed=0)
    server, vllm_port, server_log = _vllm_server(folder, home, opts.gpu)  # starts while the cluster comes up
    port = free_port()
    ray.init(address="local", num_cpus=8, include_dashboard=False, namespace="mnemos", log_to_driver=False,
             logging_level="ERROR")  # fmt: skip
    try:
        # The gateway as deployed: auth (an API key), RBAC, the rate limiter and tracing on; the limit
        # is high so that the limiter runs on every request without refusing any.
        relay = {"port": port, "auth": True, "rateLimit": {"requestsPerSecond": 1e6, "burst": 1_000_000},
                 "highThroughput": not opts.no_high_throughput}  # fmt: skip
        settings = load_settings(engram={"uri": os.path.join(home, "engram")}, relay=relay)
        client = mnemos.connect(settings=settings)
        key = IdentityStore.from_settings(settings, client.engram).create_api_key("bench", "developer")
        store_model(client.engram, folder, MODEL)
        controller = platform_up(settings, client.engram)  # as `mnemos up`
        client.apply([_model_doc(opts.gpu)])
        serve.run(_rayllm_app(folder, opts.gpu), name="bench-rayllm", route_prefix="/rayllm")
        status = ray.get(controller.wait_synced.remote(None, START_TIMEOUT_S))
        if status["models"][MODEL]["status"] != "ready":
            raise RuntimeError(f"{MODEL} is not ready: {status['models'][MODEL]}")
        _wait_http(f"http://127.0.0.1:{vllm_port}/v1/models", server, START_TIMEOUT_S)

        targets = {
            "mnemos": (f"http://127.0.0.1:{port}/v1/chat/completions", {"Authorization": f"Bearer {key.secret}"}),
            "rayllm": (f"http://127.0.0.1:{port}/rayllm/v1/chat/completions", {}),
            "vllm": (f"http://127.0.0.1:{vllm_port}/v1/chat/completions", {}),
        }
        tps: dict[str, list[float]] = {name: [] for name in targets}
        ttft: dict[str, list[float]] = {name: [] for name in targets}
        for url, headers in targets.values():  # warm-up: one unmeasured round each
            asyncio.run(_round(url, headers, 1))
        names = list(targets)
        for i in range(rounds):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                url, headers = targets[name]
                rate, firsts = asyncio.run(_round(url, headers, per_stream))
                tps[name].append(rate)
                ttft[name] += firsts
        rate = {name: statistics.median(v) for name, v in tps.items()}
        p50 = {name: statistics.median(v) * 1000 for name, v in ttft.items()}
        for name in targets:
            print(f"tok/s {name}_c{STREAMS} {rate[name]:.0f}   ms {name}_ttft_p50 {p50[name]:.1f}   "
                  f"(rounds: {' '.join(f'{r:.0f}' for r in tps[name])})")  # fmt: skip
        lines = [
            target("ratio", "serving_vs_rayllm", rate["mnemos"] / rate["rayllm"], ">=", 0.95),
            target("ms", "serving_added_ttft_p50", p50["mnemos"] - p50["rayllm"], "<=", 2),
            target("ratio", "serving_vs_vllm", rate["mnemos"] / rate["vllm"], ">=", 0.9),
        ]
        print(f"info ms serving_added_ttft_p50_vs_vllm {p50['mnemos'] - p50['vllm']:.2f}")
        print("\n".join(lines))
        return 1 if any(line.endswith("(MISSED)") for line in lines) else 0
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        server_log.close()
        try:
            stop(shutdown_serve=True)
        finally:
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
