"""Tokens used beyond a reservation: a debt of the shared bucket, repaid by time, and refusals that
say the real wait (``retry_after``, the edge's ``param``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from mnemos.errors import RateLimitError
from mnemos.soul import LocalRateLimiter, SharedRateLimiter, TokenBucket
from mnemos.soul._ratelimit_actor import RateLimitService

RATE, BURST = 10.0, 20  # tpm 600: 10 tokens/s, a bucket of two seconds
USED = 137  # the probe's request: its reservation capped at the burst (20), 117 used beyond it
DEBT = USED - BURST


class Tick:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class InProcessActor:
    """The ``ratelimit`` actor's own class, called in this process: ``handle.take.remote(...)``
    returns an awaitable, as a Ray actor handle's does. ``calls`` counts the calls."""

    def __init__(self, clock: Tick) -> None:
        self.service = RateLimitService.__ray_actor_class__(clock=clock)
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.service, name)

        def remote(*args: Any) -> Any:
            self.calls += 1
            return method(*args)

        return SimpleNamespace(remote=remote)

    def balance(self, key: str) -> float:
        return self.service._buckets[key].level()


async def background() -> None:
    """Let the calls started in the background (prefetches, debts) run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def refused(limiter: Any, key: str, n: int) -> float:
    with pytest.raises(RateLimitError) as caught:
        await limiter.acquire(key, RATE, BURST, n)
    return caught.value.retry_after


def replicas() -> tuple[Tick, InProcessActor, SharedRateLimiter, SharedRateLimiter]:
    tick = Tick()
    actor = InProcessActor(tick)
    return tick, actor, SharedRateLimiter(actor, clock=tick), SharedRateLimiter(actor, clock=tick)


def test_a_bucket_goes_below_zero_and_its_refill_repays_the_debt() -> None:
    tick = Tick()
    bucket = TokenBucket(RATE, BURST, clock=tick)
    assert bucket.take_up_to(BURST) == BURST
    bucket.charge(DEBT)
    assert bucket.level() == pytest.approx(-DEBT)
    assert bucket.take_up_to(5) == 0 and bucket.level() == pytest.approx(-DEBT)  # a debt grants nothing
    assert bucket.retry_after(3) == pytest.approx((DEBT + 3) / RATE)
    tick.now += (DEBT + 6) / RATE
    assert bucket.take_up_to(10, minimum=7) == 0  # fewer than the minimum: none taken
    assert bucket.take_up_to(10, minimum=5) == 6
    tick.now += 60
    assert bucket.level() == BURST  # repaid, then full: never above the burst


def test_the_local_limiter_charges_a_debt_after_the_refill() -> None:
    """A replica without the actor: the overrun is charged to the bucket as it is when the request
    ends (refilled up to then), and the refill repays it."""
    tick = Tick()
    limiter = LocalRateLimiter(clock=tick)

    async def run() -> None:
        await limiter.acquire("k", RATE, BURST, 5)
        tick.now += 2.0  # the request runs; the bucket refills to its burst meanwhile
        limiter.adjust("k", 5 - USED)  # used 137 of the 5 it reserved
        wait = await refused(limiter, "k", 1)
        assert wait == pytest.approx((USED - 5 - BURST + 1) / RATE)
        tick.now += wait - 0.05
        await refused(limiter, "k", 1)
        tick.now += 0.05
        await limiter.acquire("k", RATE, BURST, 1)

    asyncio.run(run())


def test_an_overrun_is_repaid_by_idle_time_across_replicas() -> None:
    """The probe: one request reserves the whole burst and uses 117 tokens more. The debt goes to
    the shared bucket at once; after (debt + 3) / rate seconds with no request at all, both
    replicas (the one that overran and the other) pass a 1-token request (the first one to ask
    takes two: its request and a lease's worth)."""
    tick, actor, a, b = replicas()

    async def run() -> None:
        await a.acquire("tpm:k", RATE, BURST, BURST)
        a.adjust("tpm:k", BURST - USED)
        await background()
        assert actor.balance("tpm:k") == pytest.approx(-DEBT)  # charged to the shared bucket, not kept
        tick.now += (DEBT + 3) / RATE + 1e-6  # idle
        await b.acquire("tpm:k", RATE, BURST, 1)
        await a.acquire("tpm:k", RATE, BURST, 1)

    asyncio.run(run())


def test_retry_after_is_the_real_wait_and_a_refused_client_costs_no_calls() -> None:
    tick, actor, a, b = replicas()

    async def run() -> None:
        await a.acquire("tpm:k", RATE, BURST, BURST)
        a.adjust("tpm:k", BURST - USED)
        await background()
        tick.now += 5.0
        wait_b = await refused(b, "tpm:k", 3)  # the other replica sees the debt too
        assert wait_b == pytest.approx((DEBT + 3) / RATE - 5.0)
        wait_a = await refused(a, "tpm:k", 3)  # the one that overran: from what it knows, no call
        assert wait_a == pytest.approx(wait_b)
        calls = actor.calls
        for step in (1.0, 0.5, wait_b - 1.5 - 0.01):
            tick.now += step
            assert await refused(b, "tpm:k", 3) == pytest.approx(wait_b - (tick.now - 105.0))
            await refused(a, "tpm:k", 3)
        assert actor.calls == calls, "a refused client called the actor before its retry time"
        tick.now += 0.01 + 1e-6
        await b.acquire("tpm:k", RATE, BURST, 3)  # exactly when it was told
        await refused(a, "tpm:k", 3)  # b took them: a asks (one call) and is told the new wait
        wait = await refused(a, "tpm:k", 3)
        tick.now += wait + 1e-6
        await a.acquire("tpm:k", RATE, BURST, 3)

    asyncio.run(run())


def test_two_replicas_overrunning_stay_within_the_limit() -> None:
    """Replicas that keep using more than they reserve: the tokens used over a long window stay
    within burst + rate x time, as with one bucket."""
    tick, actor, a, b = replicas()
    used = 0

    async def run() -> None:
        nonlocal used
        for i in range(4000):  # 400 s, a request every 0.1 s, far over 10 tokens/s in actual use
            replica = a if i % 2 else b
            try:
                await replica.acquire("tpm:k", RATE, BURST, 4)
            except RateLimitError:
                pass
            else:
                replica.adjust("tpm:k", 4 - 9)  # reserved 4, used 9
                used += 9
            await background()
            tick.now += 0.1

    asyncio.run(run())
    assert RATE * 400 * 0.9 <= used <= BURST + RATE * 400 + 9


def test_a_debt_settled_after_the_lease_expired_is_charged_to_the_shared_bucket() -> None:
    tick, actor, a, _ = replicas()

    async def run() -> None:
        await a.acquire("tpm:k", RATE, BURST, 4)  # a lease of 5 (one + what waited): 1 left
        await background()
        held = a._leases["tpm:k"].tokens
        before = actor.balance("tpm:k")
        tick.now += 1.5  # past the lease's TTL (1 s); the bucket refills 15
        a.adjust("tpm:k", -30)
        await background()
        # Paid from the lease first, the rest charged to the shared bucket (refilled up to now).
        assert a._leases["tpm:k"].tokens == 0
        assert actor.balance("tpm:k") == pytest.approx(min(BURST, before + 15) - (30 - held))
        wait = await refused(a, "tpm:k", 1)
        assert wait == pytest.approx((1 - actor.balance("tpm:k")) / RATE)

    asyncio.run(run())


def test_without_the_actor_the_debt_is_charged_to_the_local_bucket() -> None:
    tick = Tick()

    class Gone:
        def __getattr__(self, name: str) -> Any:
            def remote(*args: Any) -> Any:
                raise ConnectionError("actor gone")

            return SimpleNamespace(remote=remote)

    limiter = SharedRateLimiter(Gone(), clock=tick)

    async def run() -> None:
        await limiter.acquire("tpm:k", RATE, BURST, BURST)  # from the per-replica bucket
        limiter.adjust("tpm:k", BURST - USED)  # settled where it was taken: no call
        limiter._actor = Gone()  # (a failed call forgets the handle; a real limiter looks it up again)
        wait = await refused(limiter, "tpm:k", 1)
        assert wait == pytest.approx((DEBT + 1) / RATE)

    asyncio.run(run())


def test_governor_tpm_after_a_request_larger_than_the_burst(tmp_path: Path) -> None:
    """The probe through the Governor: a key of tpm 600, one request of 137 tokens, then small
    ones: refused for (117 + 1) / 10 s, each refusal saying the wait left, then admitted."""
    from mnemos.genome.metering import UsageLimits
    from mnemos.soul.limits import Governor, MeteredIdentity

    tick, actor, limiter, _ = replicas()
    governor = Governor(limiter=limiter, actor=actor, flush_s=0.01)
    key = MeteredIdentity(subject="dev", limits_key="k1", limits=UsageLimits(tpm=600))

    async def run() -> None:
        ticket = await governor.admit(key, "m", reserve_tokens=128 + 9)
        governor.settle(ticket, 9, 128)
        await background()
        for waited in (0.0, 3.0, 6.0):
            tick.now = 100.0 + waited
            with pytest.raises(RateLimitError) as caught:
                await governor.admit(key, "m", reserve_tokens=1)
            assert caught.value.retry_after == pytest.approx((DEBT + 1) / RATE - waited)
            assert caught.value.param == "key.tpm"
            assert f"retry after {(DEBT + 1) / RATE - waited:.2f}s" in caught.value.message
        tick.now = 100.0 + (DEBT + 1) / RATE + 1e-6
        governor.settle(await governor.admit(key, "m", reserve_tokens=1), 1, 0)
        await governor.aclose()

    asyncio.run(run())


def test_an_overrun_is_repaid_on_the_real_actor(ray_cluster: None) -> None:
    """The same through a Ray actor and the real clock (50 tokens/s: a debt of 20 is 0.4 s)."""
    from mnemos.soul.ratelimit import ensure

    key = f"debt-{time.time_ns()}"
    actor = ensure()

    async def run() -> None:
        a, b = SharedRateLimiter(actor), SharedRateLimiter(actor)
        await a.acquire(key, 50.0, 10, 10)
        a.adjust(key, -20)
        await asyncio.sleep(0.05)  # the charge goes out in the background
        with pytest.raises(RateLimitError) as caught:
            await b.acquire(key, 50.0, 10, 2)
        assert 0.3 < caught.value.retry_after <= 0.45
        await asyncio.sleep(caught.value.retry_after)
        await b.acquire(key, 50.0, 10, 2)

    asyncio.run(run())


# -- the edge's per-principal limit ----------------------------------------------------------------


def _guard(tmp_path: Path, make_settings: Any, tick: Tick) -> Any:
    from mnemos.engram import Engram
    from mnemos.soul import EdgeGuard

    settings = make_settings(tmp_path, auth=False, rate_limit={"requests_per_second": 2.0, "burst": 2})
    return EdgeGuard(settings, Engram.from_settings(settings), limiter=LocalRateLimiter(clock=tick))


def test_the_edge_refusal_names_its_limit(tmp_path: Path, make_settings: Any, make_app: Any, serve: Any) -> None:
    from mnemos.relay._errors import error_response

    tick = Tick()
    guard = _guard(tmp_path, make_settings, tick)
    with serve(make_app(guard)) as served:
        statuses = [httpx.get(served.url + "/v1/lineage", timeout=30) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    error = statuses[2].json()["error"]
    assert error["param"] == "relay.rateLimit" and error["type"] == "rate_limit_error"
    assert "retry after 0.50s" in error["message"] and statuses[2].headers["retry-after"] == "1"

    async def almost_there() -> RateLimitError:
        from mnemos.soul.identity import Principal

        tick.now += 0.4999  # a token is 0.1 ms away
        with pytest.raises(RateLimitError) as caught:
            await guard.rate_limit(Principal.anonymous())
        return caught.value

    exc = asyncio.run(almost_there())
    assert "0.00s" not in exc.message and "retry after 0.01s" in exc.message and exc.retry_after >= 0.01
    relayed = error_response(exc)  # RELAY's rendering keeps the param and a whole-second Retry-After
    assert b'"param":"relay.rateLimit"' in relayed.body.replace(b" ", b"")
    assert relayed.headers["retry-after"] == "1"


def test_the_edge_refusal_names_the_policy_that_set_the_limit(tmp_path: Path, make_settings: Any) -> None:
    from mnemos.genome import Registry, parse_resource
    from mnemos.soul.identity import Principal

    tick = Tick()
    guard = _guard(tmp_path, make_settings, tick)
    Registry(guard.engram).apply(
        parse_resource(
            {
                "apiVersion": "genome.mnemos.dev/v1",
                "kind": "Policy",
                "metadata": {"name": "slow-anonymous"},
                "spec": {"rateLimit": {"requestsPerSecond": 1.0, "burst": 1, "principals": ["anonymous"]}},
            }
        )
    )

    async def run() -> RateLimitError:
        await guard.rate_limit(Principal.anonymous())
        with pytest.raises(RateLimitError) as caught:
            await guard.rate_limit(Principal.anonymous())
        return caught.value

    exc = asyncio.run(run())
    assert exc.param == "policy slow-anonymous.rateLimit"
    assert exc.retry_after == pytest.approx(1.0) and "retry after 1.00s" in exc.message
