"""A token bucket: the one rate-limit primitive of SOUL (the gateway's limits, the key-reload guard)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` stored; starts full."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.rate = float(rate)
        self.burst = int(burst)
        self.tokens = float(burst)
        self.updated = clock()

    def configure(self, rate: float, burst: int) -> None:
        """Change the limit (a Policy was applied); tokens held are kept, capped at the new burst."""
        if rate != self.rate or burst != self.burst:
            self._refill(self.clock())
            self.rate, self.burst = float(rate), int(burst)
            self.tokens = min(self.tokens, float(burst))

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, n: int = 1) -> bool:
        """Take ``n`` tokens if all are available."""
        self._refill(self.clock())
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def take_up_to(self, n: int) -> int:
        """Take as many whole tokens as are available, up to ``n``; returns how many."""
        self._refill(self.clock())
        granted = min(n, int(self.tokens))
        self.tokens -= granted
        return granted

    def give(self, n: int) -> None:
        """Put back ``n`` tokens taken but not used (at most ``burst`` stored, as always)."""
        self._refill(self.clock())
        self.tokens = min(float(self.burst), self.tokens + n)

    def retry_after(self, n: int = 1) -> float:
        """Seconds until ``n`` tokens are available."""
        self._refill(self.clock())
        return max(0.0, (n - self.tokens) / self.rate)

    def is_full(self, now: float | None = None) -> bool:
        """Whether the bucket holds ``burst`` tokens (refilled up to ``now``)."""
        self._refill(self.clock() if now is None else now)
        return self.tokens >= self.burst
