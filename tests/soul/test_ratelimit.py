"""Rate limits: the token bucket, and one shared limit across two gateway replicas at 2x the rate."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from mnemos.engram import Engram
from mnemos.errors import RateLimitError
from mnemos.genome import Registry, parse_resource
from mnemos.soul import EdgeGuard, IdentityStore, LocalRateLimiter, SharedRateLimiter, TokenBucket
from mnemos.soul.ratelimit import ensure

LIMIT_RPS = 20.0
BURST = 4
SECONDS = 3.0


class Tick:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket() -> None:
    tick = Tick()
    bucket = TokenBucket(rate=10, burst=3, clock=tick)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.1)
    tick.now += 0.25
    assert bucket.take_up_to(5) == 2
    tick.now += 10
    assert bucket.tokens <= 3 and bucket.take_up_to(10) == 3  # never more than the burst
    bucket.configure(rate=1, burst=1)
    tick.now += 0.5
    assert not bucket.take()
    assert bucket.retry_after() == pytest.approx(0.5)


def test_local_limiter_refuses_with_retry_after() -> None:
    limiter = LocalRateLimiter()

    async def run() -> RateLimitError:
        await limiter.acquire("p", 1.0, 2)
        await limiter.acquire("p", 1.0, 2)
        with pytest.raises(RateLimitError) as caught:
            await limiter.acquire("p", 1.0, 2)
        return caught.value

    err = asyncio.run(run())
    assert 0 < err.retry_after <= 1.0 and err.status == 429 and "'p'" in err.message


def test_shared_limiter_holds_one_bucket_across_replicas(ray_cluster: None) -> None:
    """Two limiters (two replicas) drawing from the actor never exceed burst + rate x time."""
    key = f"shared-{time.time_ns()}"

    async def run() -> int:
        a, b = SharedRateLimiter(), SharedRateLimiter()
        accepted = 0
        for i in range(60):  # as fast as possible: far over 5 rps
            try:
                await (a if i % 2 else b).acquire(key, 5.0, 10)
                accepted += 1
            except RateLimitError as exc:
                assert exc.retry_after > 0
        return accepted

    started = time.monotonic()
    accepted = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert 10 <= accepted <= 10 + 5.0 * elapsed + 1


def test_a_stale_lease_is_spent_at_once_and_its_surplus_goes_back_to_the_shared_bucket(ray_cluster: None) -> None:
    """After a pause, a replica's next request spends the tokens it holds without waiting for the
    actor (the renewal runs in the background), and what the lease holds beyond one lease's worth
    goes back to the shared bucket with that renewal, where another replica can take it."""
    key = f"returned-{time.time_ns()}"

    async def run() -> None:
        a = SharedRateLimiter(lease_s=2.0, lease_ttl_s=0.3)  # rate 0.5/s: a lease is 1 token
        await a.acquire(key, 0.5, 10)  # a lease of 2 (one lease + the one waiting), one spent
        await SharedRateLimiter().acquire(key, 0.5, 10, n=8)  # another replica drains the bucket
        a.adjust(key, 6)  # a reservation settled with 6 unused tokens, while the lease is alive: 7 held
        await asyncio.sleep(0.4)  # the lease is now older than its TTL
        await a.acquire(key, 0.5, 10)
        renewal = a._leases[key].fetch
        assert renewal is not None and not renewal.done(), "the request waited for the actor"
        await renewal  # hands back 5 (6 held, one lease's worth kept)
        assert a._leases[key].tokens == 1
        # The bucket refilled by about 0.25 tokens: 5 are there only because they were handed back.
        await SharedRateLimiter().acquire(key, 0.5, 10, n=5)
        with pytest.raises(RateLimitError):
            await SharedRateLimiter().acquire(key, 0.5, 10, n=2)

    asyncio.run(run())


async def _drive(urls: list[str], credential: str, rate: float, seconds: float) -> list[tuple[float, int, str]]:
    """Send ``rate`` requests/s spread over ``urls`` for ``seconds``: (sent at, status, Retry-After)."""
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {credential}"}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits, headers=headers) as client:

        async def one(url: str) -> tuple[float, int, str]:
            sent = loop.time()
            resp = await client.get(url + "/v1/lineage")
            return sent, resp.status_code, resp.headers.get("retry-after", "")

        start = loop.time()
        tasks = []
        for i in range(int(rate * seconds)):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(urls[i % len(urls)])))
        return await asyncio.gather(*tasks)


def test_two_replicas_at_twice_the_rate_accept_the_limit(
    tmp_path: Path, ray_cluster: None, make_settings: Any, make_app: Any, serve: Any
) -> None:
    settings = make_settings(tmp_path)  # default relay.rateLimit is 50 rps: the Policy lowers it
    engram = Engram.from_settings(settings)
    principal = f"loadtest-{time.time_ns()}"
    Registry(engram).apply(
        parse_resource(
            {
                "apiVersion": "genome.mnemos.dev/v1",
                "kind": "Policy",
                "metadata": {"name": "loadtest-limit"},
                "spec": {"rateLimit": {"requestsPerSecond": LIMIT_RPS, "burst": BURST, "principals": [principal]}},
            }
        )
    )
    credential = IdentityStore.from_settings(settings, engram).create_api_key(principal, "viewer").secret
    ray.get(ensure().size.remote())  # `mnemos up` starts the actor; here it may be new: warm it first
    replicas = [EdgeGuard(settings, engram), EdgeGuard(settings, engram)]  # share the `ratelimit` actor
    with serve(make_app(replicas[0])) as first, serve(make_app(replicas[1])) as second:
        results = asyncio.run(_drive([first.url, second.url], credential, 2 * LIMIT_RPS, SECONDS + 0.5))

    statuses = {status for _, status, _ in results}
    assert statuses == {200, 429}, statuses
    refused = [r for r in results if r[1] == 429]
    assert all(retry.isdigit() and int(retry) >= 1 for _, _, retry in refused)
    # Steady state: from the first refusal (the burst is spent) to the last request sent.
    first_refusal = min(sent for sent, _, _ in refused)
    window = [r for r in results if r[0] >= first_refusal]
    duration = max(sent for sent, _, _ in window) - first_refusal
    offered = len(window) / duration
    accepted = sum(1 for _, status, _ in window if status == 200) / duration
    assert offered >= 1.6 * LIMIT_RPS, f"the load generator only offered {offered:.1f} rps"
    assert abs(accepted - LIMIT_RPS) <= 0.1 * LIMIT_RPS, f"accepted {accepted:.1f} rps for a {LIMIT_RPS} rps limit"
