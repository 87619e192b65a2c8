"""Benchmark: latency the SOUL edge guard adds to a request (target: <= 2 ms at p50).

Serves one FastAPI app on 127.0.0.1 with a bare route and the same route behind
``EdgeGuard.admit`` (JWT and API key; the shared ``ratelimit`` actor on a local Ray cluster), sends
interleaved serial requests, and compares medians. Also times ``admit`` in-process.

    python benchmarks/soul_edge.py [--quick]

"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request  # module level: FastAPI resolves the routes' annotations here

_REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
sys.path[:0] = [str(_REPO / "benchmarks"), str(_REPO / "tests")]  # `_common`; `serving` (uvicorn in a thread)


def _request(credential: str, body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {credential}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
    }
    return Request(scope, receive)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 200 if args.quick else 1000

    import httpx
    import ray
    from _common import target
    from fastapi import FastAPI
    from tests_support import serving

    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.soul import EdgeGuard, IdentityStore

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="mnemos", log_to_driver=False)
    root = tempfile.mkdtemp(prefix="soul-bench-")
    settings = load_settings(
        engram={"uri": f"{root}/engram"}, relay={"rate_limit": {"requests_per_second": 2000, "burst": 4000}}
    )
    engram = Engram.from_settings(settings)
    store = IdentityStore.from_settings(settings, engram)
    token = store.create_token("bench", "developer").secret
    api_key = store.create_api_key("bench-key", "developer").secret
    guard = EdgeGuard(settings, engram)

    app = FastAPI()

    @app.post("/bare")
    async def bare(request: Request) -> dict[str, Any]:
        return {"n": len(await request.body())}

    @app.post("/guarded")
    async def guarded(request: Request) -> dict[str, Any]:
        await guard.admit(request, "infer")
        return {"n": len(await request.body())}

    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello " * 20}]}).encode()
    times: dict[str, list[float]] = {"bare": [], "jwt": [], "apikey": []}
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        plan = [("bare", "/bare", token), ("jwt", "/guarded", token), ("apikey", "/guarded", api_key)]
        for _ in range(20):  # warm-up: connections, key and revocation caches, the actor
            for _, path, cred in plan:
                client.post(path, content=body, headers={"Authorization": f"Bearer {cred}"})
        for _ in range(n):
            for name, path, cred in plan:
                started = time.perf_counter()
                resp = client.post(path, content=body, headers={"Authorization": f"Bearer {cred}"})
                times[name].append(time.perf_counter() - started)
                if resp.status_code != 200:
                    raise SystemExit(f"{name}: HTTP {resp.status_code} {resp.text}")

    async def in_process() -> dict[str, float]:
        out = {}
        for name, cred in (("jwt", token), ("apikey", api_key)):
            await guard.admit(_request(cred, body), "infer")
            started = time.perf_counter()
            for _ in range(n):
                await guard.admit(_request(cred, body), "infer")
            out[name] = (time.perf_counter() - started) / n
        return out

    direct = asyncio.run(in_process())
    ray.shutdown()

    p50 = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"info requests {n} per case; p50 ms: bare {p50['bare']:.2f}, jwt {p50['jwt']:.2f}, "
          f"apikey {p50['apikey']:.2f}")
    print(f"info admit_in_process_us jwt {direct['jwt'] * 1e6:.0f} apikey {direct['apikey'] * 1e6:.0f}")
    lines = [target("ms", f"soul_edge_added_p50_{kind}", p50[kind] - p50["bare"], "<=", 2)
             for kind in ("jwt", "apikey")]  # fmt: skip
    print("\n".join(lines))
    sys.exit(1 if any(line.endswith("(MISSED)") for line in lines) else 0)


if __name__ == "__main__":
    main()
