"""The named ``ratelimit`` actor: one token bucket per principal, shared by every gateway replica."""

from __future__ import annotations

import time

import ray

from mnemos.soul.ratelimit import TokenBucket

ACTOR_NAME = "ratelimit"
NAMESPACE = "mnemos"
_IDLE_SWEEP_EVERY = 4096


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)  # type: ignore[call-overload]
class RateLimitService:
    """Async actor holding the buckets. Replicas take tokens in small leases (``take``)."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._calls = 0

    async def take(self, key: str, n: int, rate: float, burst: int) -> tuple[int, float]:
        """Take up to ``n`` tokens of ``key``'s bucket (created full at ``burst``).

        Returns ``(granted, retry_after)``: ``retry_after`` (seconds until a token is available)
        is 0 when all ``n`` were granted.
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, burst)
        else:
            bucket.configure(rate, burst)
        granted = bucket.take_up_to(n)
        self._calls += 1
        if self._calls % _IDLE_SWEEP_EVERY == 0:
            self._sweep()
        return granted, (0.0 if granted == n else bucket.retry_after(1))

    async def reset(self, key: str | None = None) -> None:
        """Forget one bucket (or all): it starts full again."""
        if key is None:
            self._buckets.clear()
        else:
            self._buckets.pop(key, None)

    async def size(self) -> int:
        return len(self._buckets)

    def _sweep(self) -> None:
        """Drop buckets that have refilled completely: they are indistinguishable from new ones."""
        now = time.monotonic()
        for key in [k for k, b in self._buckets.items() if b.is_full(now)]:
            del self._buckets[key]
