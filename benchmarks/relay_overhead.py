"""What the RELAY gateway adds over Ray Serve itself, on an ``echo`` model (no model time to hide it).

    python benchmarks/relay_overhead.py [--quick]

One Ray cluster (num_cpus=8), one Serve instance, three applications answering the same
``POST /v1/chat/completions`` body with the same OpenAI-shaped JSON:

- ``direct``: one Serve deployment that runs the echo runtime itself (the floor Serve sets);
- ``bare``:   a plain ingress deployment → the echo ``ModelServer`` deployment, nothing else
              (the same shape as the gateway: two hops);
- ``relay``:  the MNEMOS gateway (FastAPI ingress, API-key auth, RBAC, rate limiter, validation,
              routing table, lineage, telemetry) → the echo Model's deployment.

Concurrency 1: serial requests on a keep-alive connection (p50/p99 latency). Concurrency 16:
16 threads, each with its own keep-alive connection (throughput). Rounds alternate between the
three targets so that load from other processes on the machine falls on all of them alike.
With vLLM installed, ``build_openai_app`` of Ray Serve LLM is measured too (informational).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import free_port, percentile_ms, target, throughput  # noqa: E402

BODY = json.dumps({"model": "bench-echo", "messages": [{"role": "user", "content": "hello gateway world"}],
                   "max_tokens": 8}).encode()  # fmt: skip
PATH = "/v1/chat/completions"
HEADERS = {"content-type": "application/json"}


def _echo_model_doc() -> dict[str, Any]:
    return {
        "apiVersion": "genome.mnemos.dev/v1",
        "kind": "Model",
        "metadata": {"name": "bench-echo"},
        "spec": {
            "family": "echo",
            "version": "1",
            "artifact": {"uri": "file:///dev/null"},
            "runtime": {"engine": "echo"},
            "resources": {"cpus": 0.25},
        },  # fmt: skip
    }


def _chat_json(text: str, finish: str | None, prompt_tokens: int, completion_tokens: int) -> bytes:
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()), "model": "bench-echo",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish or "stop",
                     "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }).encode()  # fmt: skip


def _deployments() -> tuple[Any, Any]:
    """The two bare Serve applications' deployment classes (defined once Ray is imported)."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    from mnemos.neuron import GenerationRequest
    from mnemos.neuron.runtimes.echo import EchoRuntime

    options = {"max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0.5}}

    @serve.deployment(**options)
    class Direct:
        """Answers by itself with the echo runtime."""

        def __init__(self) -> None:
            self.runtime = EchoRuntime(None, {})

        async def __call__(self, request: Request) -> Response:
            body = json.loads(await request.body())
            parts, finish, prompt, completion = [], None, 0, 0
            request = GenerationRequest(messages=body["messages"], max_tokens=body.get("max_tokens", 16))
            async for chunk in self.runtime.generate(request):
                parts.append(chunk.text)
                finish = chunk.finish_reason or finish
                prompt, completion = chunk.prompt_tokens or prompt, chunk.completion_tokens or completion
            return Response(_chat_json("".join(parts), finish, prompt, completion), media_type="application/json")

    @serve.deployment(**options)
    class PlainIngress:
        """Parses the body and calls the model deployment: nothing else."""

        def __init__(self, model: Any) -> None:
            self.model = model.options(method_name="complete")

        async def __call__(self, request: Request) -> Response:
            body = json.loads(await request.body())
            generation = GenerationRequest(messages=body["messages"], max_tokens=body.get("max_tokens", 16))
            answer = await self.model.remote(generation)
            return Response(_chat_json(answer.text, answer.finish_reason, answer.prompt_tokens,
                                       answer.completion_tokens), media_type="application/json")  # fmt: skip

    return Direct, PlainIngress


def _serial(port: int, prefix: str, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            conn.request("POST", prefix + PATH, BODY, HEADERS)
            response = conn.getresponse()
            data = response.read()
            out.append(time.perf_counter() - start)
            if response.status != 200:
                raise RuntimeError(f"{prefix or '/'}: HTTP {response.status}: {data[:200]!r}")
    finally:
        conn.close()
    return out


def _concurrent(port: int, prefix: str, n: int, workers: int = 16) -> float:
    """Requests per second with ``workers`` threads sending ``n`` requests in all."""
    return throughput(lambda count: _serial(port, prefix, count), n, workers)


def _vllm_line() -> str:
    return ("info the echo runtime has no serving engine to compare: MNEMOS against Ray Serve LLM's "
            "build_openai_app and vLLM's own server, on a vLLM model, is benchmarks/serving_peers.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (under a minute)")
    opts = parser.parse_args()
    rounds = 3 if opts.quick else 5
    serial_n = 60 if opts.quick else 200
    conc_n = 192 if opts.quick else 640

    os.environ.setdefault("MNEMOS_HOME", tempfile.mkdtemp(prefix="mnemos-bench-relay-"))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    import mnemos
    from mnemos.config import load_settings
    from mnemos.genome import Model
    from mnemos.relay import deployment_options, ensure, stop
    from mnemos.relay.model_server import ModelServer

    port = free_port()
    ray.init(address="local", num_cpus=8, include_dashboard=False, namespace="mnemos", log_to_driver=False,
             logging_level="ERROR")  # fmt: skip
    try:
        # The gateway as deployed: auth (an API key), RBAC, the rate limiter and tracing all on; the
        # limit is set high so that the limiter runs on every request without refusing any.
        relay = {"port": port, "auth": True, "rateLimit": {"requestsPerSecond": 1e6, "burst": 1_000_000}}
        settings = load_settings(engram={"uri": os.path.join(os.environ["MNEMOS_HOME"], "engram")}, relay=relay)
        client = mnemos.connect(settings=settings)
        from mnemos.soul.ratelimit import ensure as ensure_ratelimit
        from mnemos.soul.store import IdentityStore

        ensure_ratelimit(settings, client.engram)
        key = IdentityStore.from_settings(settings, client.engram).create_api_key("bench", "developer")
        HEADERS["Authorization"] = f"Bearer {key.secret}"  # the bare compositions ignore it
        controller = ensure(settings, client.engram)
        doc = _echo_model_doc()
        client.apply([doc])
        ray.get(controller.wait_synced.remote(None, 300))
        direct_cls, plain_cls = _deployments()
        model = Model.model_validate(doc)
        model_app = ModelServer.options(**deployment_options(model)).bind(model.dump(), client.engram, None)
        serve.run(direct_cls.bind(), name="bench-direct", route_prefix="/direct")
        serve.run(plain_cls.bind(model_app), name="bench-bare", route_prefix="/bare")

        targets = {"direct": "/direct", "bare": "/bare", "relay": ""}
        latency: dict[str, list[float]] = {name: [] for name in targets}
        throughput: dict[str, list[float]] = {name: [] for name in targets}
        for prefix in targets.values():  # warm up connections, handles and code paths
            _serial(port, prefix, 30)
            _concurrent(port, prefix, 64)
        for _ in range(rounds):
            for name, prefix in targets.items():
                latency[name] += _serial(port, prefix, serial_n // rounds)
            for name, prefix in targets.items():
                throughput[name].append(_concurrent(port, prefix, conc_n // rounds))

        p50 = {name: percentile_ms(v, 0.5) for name, v in latency.items()}
        p99 = {name: percentile_ms(v, 0.99) for name, v in latency.items()}
        rps = {name: statistics.median(v) for name, v in throughput.items()}
        for name in targets:
            print(f"ms {name}_c1_p50 {p50[name]:.2f} p99 {p99[name]:.2f}   rps {name}_c16 {rps[name]:.0f}")
        print(f"info ms relay_added_vs_direct_p50 {p50['relay'] - p50['direct']:.2f}")
        print(f"info ratio relay_throughput_vs_direct {rps['relay'] / rps['direct']:.2f}")
        print(f"info ratio bare_throughput_vs_direct {rps['bare'] / rps['direct']:.2f}")
        print(_vllm_line())
        print(target("ms", "relay_added_p50", p50["relay"] - p50["bare"], "<=", 2))
        print(target("ratio", "relay_throughput_vs_bare", rps["relay"] / rps["bare"], ">=", 0.8))
    finally:
        try:
            stop(shutdown_serve=True)
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
