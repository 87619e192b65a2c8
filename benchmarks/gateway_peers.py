"""The MNEMOS gateway against the LiteLLM proxy, both in front of the same local upstream.

    python benchmarks/gateway_peers.py [--quick] [--no-high-throughput]

- ``direct``:  a bare-ASGI OpenAI-compatible server on loopback (its own process, uvicorn);
- ``litellm``: the LiteLLM proxy (its own venv, ``build/litellm-venv``, built here when missing:
  ``pip install 'litellm[proxy]'``), master key, one worker, ``model_list`` → the upstream;
- ``mnemos``:  the MNEMOS gateway (Serve in high-throughput mode unless ``--no-high-throughput``)
  with an Adapter → the upstream, an API key with per-key RPM/TPM limits high enough not to
  refuse, auth, lineage and tracing on, every control-plane actor up as ``mnemos up`` starts them;
- ``floor``:   Serve's own floor for any gateway hosted on it: a bare FastAPI deployment in the same
  Serve (same mode) that forwards the body to the upstream with one pooled aiohttp session and
  nothing else (no auth, limits, lineage or tracing). Printed as ``info`` lines, not a target: it
  tells how much of MNEMOS's added time is Serve's and how much is MNEMOS's own.

Non-streamed chat: serial p50/p99 (one keep-alive connection) and requests/s with 16 concurrent
clients on one key; streamed chat: the same for the time to first byte. "Added" is a gateway's p50
minus the upstream's direct p50. Rounds alternate between the targets. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the floor's annotations from here

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import deployed_serve_env, free_port, percentile_ms, platform_up, target, throughput  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LITELLM_VENV = REPO / "build" / "litellm-venv"
MODEL = "peer-chat"
MASTER = "sk-bench-master-key"
PATH = "/v1/chat/completions"

UPSTREAM = textwrap.dedent('''
    import json, sys
    ANSWER = json.dumps({"id": "up", "object": "chat.completion", "created": 0, "model": "MODEL_NAME",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}}).encode()
    def chunk(body):
        return b"data: " + json.dumps(body).encode() + b"\\n\\n"
    STREAM = [chunk({"id": "up", "object": "chat.completion.chunk", "created": 0, "model": "MODEL_NAME",
                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": w}, "finish_reason": None}]})
              for w in ("hi", " there")]
    STREAM.append(chunk({"id": "up", "object": "chat.completion.chunk", "created": 0, "model": "MODEL_NAME",
                         "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}}))
    STREAM.append(b"data: [DONE]\\n\\n")
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if b'"stream":true' in body.replace(b" ", b""):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            for part in STREAM:
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": ANSWER})
    if __name__ == "__main__":
        import uvicorn
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", access_log=False)
''').replace("MODEL_NAME", MODEL)


def _body(stream: bool) -> bytes:
    doc: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hello gateway world"}],
                           "max_tokens": 8}  # fmt: skip
    if stream:
        doc.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(doc).encode()


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, what: str, timeout: float = 180.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise RuntimeError(f"{what} did not start on port {port}") from None
            time.sleep(0.2)


def _litellm_python() -> Path:
    """The LiteLLM venv's python, built (``pip install 'litellm[proxy]'``) when missing."""
    python = LITELLM_VENV / "bin" / "python"
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        print("info building build/litellm-venv (pip install 'litellm[proxy]'; a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "litellm[proxy]"], check=True)
    return python


class Target:
    """One endpoint: port, path prefix, headers."""

    def __init__(self, name: str, port: int, headers: dict[str, str], path: str = PATH) -> None:
        self.name, self.port, self.path = name, port, path
        self.headers = {"content-type": "application/json", **headers}
        self.overhead: list[float] = []  # x-mnemos-overhead-ms of the measured serial requests (seconds)

    def serial(self, n: int, stream: bool, keep_overhead: bool = False) -> list[float]:
        """Seconds per request (to the first body byte when ``stream``), one keep-alive connection;
        ``keep_overhead``: also keep each answer's ``x-mnemos-overhead-ms`` in ``overhead``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        body, out = _body(stream), []
        try:
            for _ in range(n):
                start = time.perf_counter()
                conn.request("POST", self.path, body, self.headers)
                response = conn.getresponse()
                try:
                    if stream:
                        first = response.read1(1)
                        out.append(time.perf_counter() - start)
                        data = first + response.read()
                    else:
                        data = response.read()
                        out.append(time.perf_counter() - start)
                except http.client.HTTPException as exc:  # say whose answer broke off
                    raise RuntimeError(f"{self.name}: HTTP {response.status}, answer cut short: {exc!r}") from exc
                if response.status != 200:
                    raise RuntimeError(f"{self.name}: HTTP {response.status}: {data[:300]!r}")
                overhead = response.getheader("x-mnemos-overhead-ms")
                if keep_overhead and overhead is not None:
                    self.overhead.append(float(overhead) / 1000.0)
        finally:
            conn.close()
        return out

    def concurrent(self, n: int, stream: bool, workers: int = 16) -> float:
        """Requests per second with ``workers`` threads (each its own connection) sending ``n`` in all."""
        return throughput(lambda count: self.serial(count, stream), n, workers)


def _start_litellm(upstream_port: int, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    python = _litellm_python()
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(json.dumps({
        "model_list": [{"model_name": MODEL, "litellm_params": {
            "model": f"openai/{MODEL}", "api_base": f"http://127.0.0.1:{upstream_port}/v1", "api_key": "sk-upstream"}}],
        "general_settings": {"master_key": MASTER},
        "litellm_settings": {"telemetry": False},
    }))  # fmt: skip
    env = {**os.environ, "LITELLM_LOG": "ERROR", "NO_PROXY": "127.0.0.1,localhost", "LITELLM_TELEMETRY": "False"}
    proc = subprocess.Popen([str(python.with_name("litellm")), "--config", str(config), "--host", "127.0.0.1",
                             "--port", str(port), "--num_workers", "1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(workdir / "litellm.log", "wb"))  # noqa: SIM115  # fmt: skip
    _wait_port(port, proc, "the LiteLLM proxy", timeout=300)
    return proc, port


def _start_mnemos(upstream_port: int, high_throughput: bool) -> tuple[int, str]:
    """The MNEMOS gateway on an embedded Ray cluster: (port, API key)."""
    if high_throughput:  # as `mnemos up` runs Serve
        deployed_serve_env(os.environ["MNEMOS_HOME"])
    import ray

    import mnemos
    from mnemos.config import load_settings
    from mnemos.soul.store import IdentityStore

    port = free_port()
    ray.init(address="local", num_cpus=8, include_dashboard=False, namespace="mnemos", log_to_driver=False,
             logging_level="ERROR")  # fmt: skip
    relay = {"port": port, "auth": True, "rateLimit": {"requestsPerSecond": 1e6, "burst": 1_000_000},
             "highThroughput": high_throughput}  # fmt: skip
    settings = load_settings(engram={"uri": os.path.join(os.environ["MNEMOS_HOME"], "engram")}, relay=relay)
    client = mnemos.connect(settings=settings)
    # Per-key limits on (the limiter runs on every request), high enough not to refuse.
    key = IdentityStore.from_settings(settings, client.engram).create_api_key(
        "bench", "developer", team="bench", limits={"rpm": 10_000_000, "tpm": 1_000_000_000})
    controller = platform_up(settings, client.engram)  # as `mnemos up`
    client.apply([{"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "peer-upstream"},
                   "spec": {"baseUrl": f"http://127.0.0.1:{upstream_port}/v1", "models": [MODEL], "retries": 0,
                            "pricing": {MODEL: {"input": 0.1, "output": 0.2}}}}])  # fmt: skip
    ray.get(controller.wait_synced.remote(None, 300))
    return port, key.secret


FLOOR_PREFIX = "/serve-floor"


def _start_floor(upstream_port: int) -> None:
    """Serve's floor: a bare FastAPI deployment at ``FLOOR_PREFIX`` forwarding to the upstream."""
    from fastapi import FastAPI
    from fastapi.responses import Response, StreamingResponse
    from ray import serve

    upstream = f"http://127.0.0.1:{upstream_port}{PATH}"
    app = FastAPI()

    @serve.deployment(name="ServeFloor", max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.5})
    @serve.ingress(app)
    class ServeFloor:
        def __init__(self) -> None:
            self.session: Any = None

        @app.post(PATH)
        async def forward(self, request: Request) -> Response:
            import aiohttp

            if self.session is None:
                self.session = aiohttp.ClientSession()
            body = await request.body()
            try:
                answer = await self.session.post(upstream, data=body, headers={"content-type": "application/json"})
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):  # a kept-alive connection the upstream
                answer = await self.session.post(upstream, data=body,  # closed meanwhile: once more, as
                                                 headers={"content-type": "application/json"})  # gateways do
            if b'"stream":true' not in body.replace(b" ", b""):
                data = await answer.read()
                answer.release()
                return Response(data, status_code=answer.status, media_type="application/json")

            async def chunks() -> Any:
                try:
                    async for chunk in answer.content.iter_any():
                        yield chunk
                finally:
                    answer.release()

            return StreamingResponse(chunks(), status_code=answer.status, media_type="text/event-stream")

    serve.run(ServeFloor.bind(), name="serve-floor", route_prefix=FLOOR_PREFIX)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a few minutes, LiteLLM's venv built)")
    parser.add_argument("--no-high-throughput", action="store_true", help="Serve in its default mode")
    opts = parser.parse_args()
    rounds = 3 if opts.quick else 5
    serial_n = 150 if opts.quick else 500
    conc_n = 480 if opts.quick else 1600

    os.environ.setdefault("MNEMOS_HOME", tempfile.mkdtemp(prefix="mnemos-bench-peers-"))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-peers-"))
    (workdir / "upstream.py").write_text(UPSTREAM)
    upstream_port = free_port()
    procs = [subprocess.Popen([sys.executable, str(workdir / "upstream.py"), str(upstream_port)])]
    try:
        _wait_port(upstream_port, procs[0], "the upstream")
        litellm, litellm_port = _start_litellm(upstream_port, workdir)
        procs.append(litellm)
        mnemos_port, key = _start_mnemos(upstream_port, not opts.no_high_throughput)
        _start_floor(upstream_port)
        targets = [Target("direct", upstream_port, {}),
                   Target("litellm", litellm_port, {"Authorization": f"Bearer {MASTER}"}),
                   Target("mnemos", mnemos_port, {"Authorization": f"Bearer {key}"}),
                   Target("floor", mnemos_port, {}, FLOOR_PREFIX + PATH)]  # fmt: skip
        results: dict[tuple[str, bool], dict[str, list[float]]] = {}
        for stream in (False, True):
            for t in targets:  # warm up connections, handles and code paths
                t.serial(30, stream)
                t.concurrent(64, stream)
            for _ in range(rounds):
                for t in targets:
                    results.setdefault((t.name, stream), {"lat": [], "rps": []})["lat"] += t.serial(
                        serial_n // rounds, stream, keep_overhead=True)
                for t in targets:
                    results[(t.name, stream)]["rps"].append(t.concurrent(conc_n // rounds, stream))
        lines, missed = [], False
        inside = targets[2].overhead  # the measured serial requests, streamed and not
        if inside:
            print(f"info ms mnemos_overhead_header_p50 {percentile_ms(inside, 0.5):.2f} "
                  f"p99 {percentile_ms(inside, 0.99):.2f}   (time inside the MNEMOS app, upstream excluded; "
                  "the rest of the added time is Serve's ingress and the hops)")  # fmt: skip
        for stream, label in ((False, ""), (True, "stream_ttfb_")):
            p50 = {t.name: percentile_ms(results[(t.name, stream)]["lat"], 0.5) for t in targets}
            p99 = {t.name: percentile_ms(results[(t.name, stream)]["lat"], 0.99) for t in targets}
            rps = {t.name: statistics.median(results[(t.name, stream)]["rps"]) for t in targets}
            for t in targets:
                print(f"ms {label}{t.name}_c1_p50 {p50[t.name]:.2f} p99 {p99[t.name]:.2f}   "
                      f"rps {label}{t.name}_c16 {rps[t.name]:.0f}")  # fmt: skip
            added = {name: p50[name] - p50["direct"] for name in ("litellm", "mnemos", "floor")}
            added_p99 = p99["mnemos"] - p50["direct"]
            print(f"info ms {label}litellm_added_p50 {added['litellm']:.2f}")
            print(f"info ms {label}serve_floor_added_p50 {added['floor']:.2f} p99 {p99['floor'] - p50['direct']:.2f}"
                  f"   mnemos_over_floor_p50 {added['mnemos'] - added['floor']:.2f}   (the floor: a bare FastAPI "
                  "deployment on the same Serve forwarding to the same upstream)")  # fmt: skip
            lines += [
                target("ratio", f"{label}gateway_rps_vs_litellm", rps["mnemos"] / rps["litellm"], ">=", 5),
                target("ratio", f"{label}gateway_added_p50_vs_litellm",
                       max(added["mnemos"], 0.0) / max(added["litellm"], 1e-9), "<=", 0.1),
                target("ms", f"{label}gateway_added_p50", added["mnemos"], "<=", 1),
                target("ms", f"{label}gateway_added_p99", added_p99, "<=", 3),
            ]  # fmt: skip
        for line in lines:
            print(line)
            missed = missed or line.endswith("(MISSED)")
    finally:
        try:
            import ray

            if ray.is_initialized():
                from mnemos.relay import stop

                stop(shutdown_serve=True)
                ray.shutdown()
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
