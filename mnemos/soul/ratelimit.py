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
on the rate. When the bucket is empty
the actor says how long until the next token; the replica refuses locally until then
(``RateLimitError`` with ``retry_after``) without calling the actor again, so an abusive client
costs no Ray calls.

If the actor cannot be reached the replica falls back to a local bucket (per-replica limit) rather
than refusing everyone.

Buckets count requests (``n=1``) or tokens (``n`` = a request's reservation, for tokens-per-minute
limits). ``adjust(key, delta)`` settles a reservation locally: unused tokens go back to the
replica's lease (or, if it expired, back to the shared bucket), and tokens used beyond it are a
debt the next lease pays first, so the long-run rate of actual tokens stays at the limit without a
Ray call per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from mnemos.errors import RateLimitError
from mnemos.soul.bucket import TokenBucket

__all__ = ["LocalRateLimiter", "SharedRateLimiter", "TokenBucket", "default_limiter", "ensure"]

log = logging.getLogger(__name__)


def _refuse(key: str, rate: float, retry_after: float) -> RateLimitError:
    return RateLimitError(
        f"rate limit of {rate:g} requests/s exceeded for {key!r}; retry after {retry_after:.2f}s",
        retry_after=max(retry_after, 0.001),
    )


class LocalRateLimiter:
    """Buckets in this process only (no Ray): the limit holds per replica."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    async def acquire(self, key: str, rate: float, burst: int, n: int = 1) -> None:
        """Take ``n`` tokens of ``key`` or raise ``RateLimitError`` with ``retry_after``."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, burst)
        else:
            bucket.configure(rate, burst)
        if not bucket.take(n):
            raise _refuse(key, rate, bucket.retry_after(n))

    def adjust(self, key: str, delta: int) -> None:
        """Give back (``delta > 0``) or charge (``delta < 0``) tokens of ``key``'s bucket."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(float(bucket.burst), bucket.tokens + delta)


@dataclass
class _Lease:
    tokens: int = 0
    expires: float = 0.0
    denied_until: float = 0.0
    waiting: int = 0
    returned: int = 0  # unused tokens to put back in the shared bucket with the next fetch
    fetch: asyncio.Task[None] | None = None


class SharedRateLimiter:
    """The replica side of the shared buckets (see the module docstring).

    Args:
        actor: the ``ratelimit`` actor handle (default: get or create it).
        lease_s: a lease holds about this many seconds' worth of the rate.
        lease_ttl_s: unused leased tokens go back to the shared bucket after this long.
        engram: where the actor keeps its usage ledger, should this limiter be the one to create it.
    """

    def __init__(self, actor: Any = None, *, lease_s: float = 0.1, lease_ttl_s: float = 1.0,
                 engram: Any = None) -> None:  # fmt: skip
        self._actor = actor
        self.engram = engram
        self.lease_s = lease_s
        self.lease_ttl_s = lease_ttl_s
        self._leases: dict[str, _Lease] = {}
        self._fallback = LocalRateLimiter()

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
        for _ in range(3):
            now = time.monotonic()
            if lease.tokens >= n:
                lease.tokens -= n
                if lease.fetch is None:
                    if lease.tokens * 2 < self.lease_size(rate, burst):
                        self._start_fetch(key, lease, rate, burst)  # running low: refill before it runs out
                    elif now >= lease.expires:
                        self._renew(key, lease, rate, burst)
                return
            if now < lease.denied_until and not lease.returned:  # tokens to put back: ask again
                raise _refuse(key, rate, lease.denied_until - now)
            lease.waiting += n
            try:
                fetch = lease.fetch or self._start_fetch(key, lease, rate, burst)
                await asyncio.shield(fetch)
            except _ActorUnavailable:
                await self._fallback.acquire(key, rate, burst, n)
                return
            finally:
                lease.waiting -= n
        raise _refuse(key, rate, n / rate)

    def adjust(self, key: str, delta: int) -> None:
        """Settle a reservation of ``key``: ``delta > 0`` returns unused tokens to this replica's
        lease, ``delta < 0`` charges tokens used beyond it (a debt the next lease pays first)."""
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = _Lease()
        if delta > 0 and time.monotonic() >= lease.expires:
            lease.returned += delta  # the lease expired: these go back to the shared bucket
            return
        lease.tokens += delta

    def _renew(self, key: str, lease: _Lease, rate: float, burst: int) -> None:
        """A lease past its TTL that still holds tokens: keep one lease's worth, hand the rest back
        and top it up in the background (no Ray call when there is nothing to hand back or take)."""
        size = self.lease_size(rate, burst)
        if lease.tokens > size:
            lease.returned += lease.tokens - size
            lease.tokens = size
        if lease.tokens < size or lease.returned:
            self._start_fetch(key, lease, rate, burst, want=size - lease.tokens)
        else:
            lease.expires = time.monotonic() + self.lease_ttl_s

    def _start_fetch(
        self, key: str, lease: _Lease, rate: float, burst: int, want: int | None = None
    ) -> asyncio.Task[None]:
        """Ask the actor for ``want`` tokens (default: a lease's worth plus what waits, plus any debt),
        handing back ``lease.returned``."""
        if want is None:
            want = min(int(burst), self.lease_size(rate, burst) + lease.waiting) + max(0, -lease.tokens)
        task = asyncio.ensure_future(self._fetch(key, lease, want, rate, burst))
        task.add_done_callback(_retrieve)  # a prefetch nobody awaits must not warn
        lease.fetch = task
        return task

    async def _fetch(self, key: str, lease: _Lease, want: int, rate: float, burst: int) -> None:
        returned, lease.returned = lease.returned, 0
        try:
            granted, retry_after = await self.actor.take.remote(key, want, rate, burst, returned)
        except Exception as exc:  # noqa: BLE001 - actor restarting or gone: degrade, do not refuse all
            lease.returned += returned
            log.warning("ratelimit actor unavailable (%s); using a per-replica bucket", type(exc).__name__)
            self._actor = None
            raise _ActorUnavailable() from None
        finally:
            lease.fetch = None
        now = time.monotonic()
        lease.tokens += granted
        lease.expires = now + self.lease_ttl_s
        if granted < want:
            lease.denied_until = now + retry_after


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
