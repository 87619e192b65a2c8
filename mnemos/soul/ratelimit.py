"""Per-principal rate limits: a token bucket that holds across gateway replicas.

The buckets live in one named async Ray actor, ``ratelimit`` (namespace ``mnemos``). Asking it on
every request would add a Ray round trip to each request, so each replica takes tokens in
*leases*: a small batch (about ``lease_s`` worth of the rate, e.g. 5 tokens at 50 rps) spent
locally, refilled in the background before it runs out. The sum over replicas can never exceed what
the shared bucket hands out, so the aggregate accepted rate stays at the limit. A replica spends the
tokens it holds even after a pause: the first request after an idle spell does not wait for a Ray
round trip (that wait was most of the gateway's p99). A lease older than ``lease_ttl_s`` is renewed
in the background on its next use, and what it holds beyond one lease (unused reservations settled
into it) goes back to the shared bucket with that renewal, so a replica that slowed down does not sit
on the rate.

When the shared bucket cannot give what a request needs, the actor answers with its balance; the
replica refuses locally (``RateLimitError``) until the refill covers the request, and that wait is
its ``retry_after``, so an abusive client costs no Ray calls and a client that waits as told gets in.

Buckets count requests (``n=1``) or tokens (``n`` = a request's reservation, for tokens-per-minute
limits). ``adjust(key, delta)`` settles a reservation: unused tokens go back to the replica's lease
(or, if it expired, back to the shared bucket with the next call). Tokens used beyond it are paid
from what the lease holds, and the rest is charged to the shared bucket at once, in the background:
the bucket goes below zero and its refill repays the debt, idle or not, exactly as one bucket would,
so the long-run rate of actual tokens stays at the limit and ``retry_after`` counts the debt.

If the actor cannot be reached the replica falls back to a local bucket (per-replica limit) rather
than refusing everyone; reservations taken from it are settled there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mnemos.errors import RateLimitError
from mnemos.soul.bucket import TokenBucket

__all__ = ["MIN_RETRY_S", "LocalRateLimiter", "SharedRateLimiter", "TokenBucket", "default_limiter", "ensure"]

log = logging.getLogger(__name__)

MIN_RETRY_S = 0.01
"""The shortest ``retry_after`` a refusal states (a wait that rounds to 0.00 s reads as a bug)."""


def _refuse(key: str, rate: float, retry_after: float) -> RateLimitError:
    wait = max(retry_after, MIN_RETRY_S)
    return RateLimitError(
        f"rate limit of {rate:g} requests/s exceeded for {key!r}; retry after {wait:.2f}s", retry_after=wait
    )


class LocalRateLimiter:
    """Buckets in this process only (no Ray): the limit holds per replica.

    Args:
        clock: the buckets' clock (tests pass a fake one).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    async def acquire(self, key: str, rate: float, burst: int, n: int = 1) -> None:
        """Take ``n`` tokens of ``key`` or raise ``RateLimitError`` with ``retry_after``."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, burst, clock=self.clock)
        else:
            bucket.configure(rate, burst)
        if not bucket.take(n):
            raise _refuse(key, rate, bucket.retry_after(n))

    def adjust(self, key: str, delta: int) -> None:
        """Give back (``delta > 0``) or charge (``delta < 0``, the bucket may go below zero) tokens
        of ``key``'s bucket."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        if delta > 0:
            bucket.give(delta)
        elif delta < 0:
            bucket.charge(-delta)


@dataclass
class _Lease:
    rate: float = 0.0  # the key's limit as last acquired (a settlement sent in the background needs it)
    burst: int = 0
    tokens: int = 0  # leased from the shared bucket, spent locally; never negative
    expires: float = 0.0
    settle: int = 0  # for the shared bucket with the next call: > 0 unused tokens go back, < 0 a debt
    denied: bool = False  # the last call got less than it asked for: ``balance`` says when to ask again
    balance: float = 0.0  # the shared bucket's balance as that call left it (negative: a debt)
    balance_at: float = 0.0
    waiting: int = 0
    local: bool = False  # the actor could not be reached: requests took the per-replica bucket
    fetch: asyncio.Task[None] | None = None

    def wait(self, short: float, now: float) -> float:
        """Seconds until the shared bucket holds ``short`` more tokens than this lease (0: ask now)."""
        if not self.denied or short <= 0 or self.rate <= 0:
            return 0.0
        return max(0.0, (short - self.balance - min(0, self.settle)) / self.rate - (now - self.balance_at))

    def pay(self) -> None:
        """Pay a debt not yet charged from the tokens this lease holds."""
        if self.settle < 0 and self.tokens > 0:
            paid = min(self.tokens, -self.settle)
            self.tokens -= paid
            self.settle += paid


class SharedRateLimiter:
    """The replica side of the shared buckets (see the module docstring).

    Args:
        actor: the ``ratelimit`` actor handle (default: get or create it).
        lease_s: a lease holds about this many seconds' worth of the rate.
        lease_ttl_s: unused leased tokens go back to the shared bucket after this long.
        engram: where the actor keeps its usage ledger, should this limiter be the one to create it.
        clock: the clock of leases and refusals (tests pass a fake one, with the actor's).
    """

    def __init__(self, actor: Any = None, *, lease_s: float = 0.1, lease_ttl_s: float = 1.0,
                 engram: Any = None, clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._actor = actor
        self.engram = engram
        self.lease_s = lease_s
        self.lease_ttl_s = lease_ttl_s
        self.clock = clock
        self._leases: dict[str, _Lease] = {}
        self._fallback = LocalRateLimiter(clock=clock)

    @property
    def actor(self) -> Any:
        if self._actor is None:
            self._actor = ensure(None, self.engram)
        return self._actor

    def lease_size(self, rate: float, burst: int) -> int:
        return max(1, min(int(burst), int(rate * self.lease_s)))

    async def acquire(self, key: str, rate: float, burst: int, n: int = 1) -> None:
        """Take ``n`` tokens of ``key`` or raise ``RateLimitError`` with ``retry_after``."""
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = _Lease()
        lease.rate, lease.burst = rate, burst
        for _ in range(3):
            now = self.clock()
            if lease.tokens >= n:
                lease.tokens -= n
                if lease.fetch is None:
                    if lease.tokens * 2 < self.lease_size(rate, burst):
                        if not lease.wait(1, now):  # (an empty shared bucket: no call until it refills)
                            self._start_fetch(key, lease)  # running low: refill before it runs out
                    elif now >= lease.expires:
                        self._renew(key, lease)
                return
            wait = lease.wait(n - lease.tokens, now)
            if wait > 0 and lease.settle <= 0:  # (tokens to put back: ask again)
                if lease.settle < 0 and lease.fetch is None:
                    self._start_fetch(key, lease)  # a debt not sent yet (settled off the event loop)
                raise _refuse(key, rate, wait)
            lease.waiting += n
            try:
                await asyncio.shield(lease.fetch or self._start_fetch(key, lease))
            except _ActorUnavailable:
                lease.local = True
                await self._fallback.acquire(key, rate, burst, n)
                return
            finally:
                lease.waiting -= n
        short = n - lease.tokens
        raise _refuse(key, rate, lease.wait(short, self.clock()) or short / rate)

    def adjust(self, key: str, delta: int) -> None:
        """Settle a reservation of ``key``: ``delta > 0`` returns unused tokens to this replica's
        lease (to the shared bucket if the lease expired), ``delta < 0`` charges tokens used beyond
        it: paid from the lease, the rest charged to the shared bucket in the background."""
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = _Lease()
        if lease.local:  # the reservation came from the per-replica bucket
            self._fallback.adjust(key, delta)
            return
        if delta > 0 and self.clock() < lease.expires:
            lease.tokens += delta
        else:
            lease.settle += delta
        lease.pay()
        if lease.settle < 0 and lease.fetch is None and lease.rate > 0:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no event loop here: the next acquire sends it
                return
            self._start_fetch(key, lease)

    def _renew(self, key: str, lease: _Lease) -> None:
        """A lease past its TTL that still holds tokens: keep one lease's worth, hand the rest back
        and top it up in the background (no Ray call when there is nothing to hand back or take)."""
        size = self.lease_size(lease.rate, lease.burst)
        if lease.tokens > size:
            lease.settle += lease.tokens - size
            lease.tokens = size
        if lease.tokens < size or lease.settle:
            self._start_fetch(key, lease, want=size - lease.tokens)
        else:
            lease.expires = self.clock() + self.lease_ttl_s

    def _start_fetch(self, key: str, lease: _Lease, want: int | None = None) -> asyncio.Task[None]:
        """Ask the actor for ``want`` tokens (default: a lease's worth plus what waits), at least what
        the waiting requests still lack, settling ``lease.settle`` on the way."""
        if want is None:
            want = min(lease.burst, self.lease_size(lease.rate, lease.burst) + lease.waiting)
        short = lease.waiting - lease.tokens
        need = min(lease.burst, short) if short > 0 else min(1, want)
        task = asyncio.ensure_future(self._fetch(key, lease, max(want, need), need, lease.rate, lease.burst))
        task.add_done_callback(_retrieve)  # a prefetch nobody awaits must not warn
        lease.fetch = task
        return task

    async def _fetch(self, key: str, lease: _Lease, want: int, need: int, rate: float, burst: int) -> None:
        settle, lease.settle = lease.settle, 0
        try:
            granted, balance = await self.actor.take.remote(key, want, rate, burst, settle, need)
        except Exception as exc:  # noqa: BLE001 - actor restarting or gone: degrade, do not refuse all
            lease.settle += settle
            log.warning("ratelimit actor unavailable (%s); using a per-replica bucket", type(exc).__name__)
            self._actor = None
            raise _ActorUnavailable() from None
        finally:
            lease.fetch = None
        now = self.clock()
        lease.tokens += granted
        lease.expires = now + self.lease_ttl_s
        lease.denied = granted < want
        lease.balance, lease.balance_at = float(balance), now
        lease.local = False
        lease.pay()
        if lease.settle < 0:  # a debt charged while this call was on its way: send it now
            self._start_fetch(key, lease)


class _ActorUnavailable(Exception):
    pass


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def ensure(settings: Any = None, engram: Any = None) -> Any:
    """Get or create the detached ``ratelimit`` actor (a CRADLE component ``ensure``); with
    ``engram`` it saves the usage ledger and budget counters there."""
    from mnemos._actors import NAMESPACE
    from mnemos.soul._ratelimit_actor import ACTOR_NAME, RateLimitService

    return RateLimitService.options(  # type: ignore[attr-defined]
        name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(engram)


def default_limiter(engram: Any = None) -> SharedRateLimiter | LocalRateLimiter:
    """Shared buckets when this process is connected to Ray, else local ones. ``engram``: where the
    ``ratelimit`` actor keeps its usage ledger if this process is the first to need it (whichever
    caller creates the actor decides, so every caller that has the platform's ENGRAM passes it)."""
    import ray

    return SharedRateLimiter(engram=engram) if ray.is_initialized() else LocalRateLimiter()
