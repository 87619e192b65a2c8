"""A token bucket: the one rate-limit primitive of SOUL (the gateway's limits, the key-reload guard).

A bucket may go below zero: ``charge`` takes tokens already spent (a request that used more than it
reserved), and the debt is repaid by the refill like any other shortfall, so ``retry_after`` is the
real wait.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]

_EPSILON = 1e-9  # a refill's rounding (2.9999999999 tokens after 0.3 s at 10/s) still counts as 3


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

    def level(self) -> float:
        """Tokens stored now (negative while a debt is being repaid)."""
        self._refill(self.clock())
        return self.tokens

    def take(self, n: int = 1) -> bool:
        """Take ``n`` tokens if all are available."""
        self._refill(self.clock())
        if self.tokens + _EPSILON >= n:
            self.tokens -= n
            return True
        return False

    def take_up_to(self, n: int, minimum: int = 1) -> int:
        """Take as many whole tokens as are available, up to ``n``, if that is at least ``minimum``
        (else none); returns how many."""
        self._refill(self.clock())
        granted = min(int(n), math.floor(self.tokens + _EPSILON)) if self.tokens > 0 else 0
        if granted < max(1, minimum):
            return 0
        self.tokens -= granted
        return granted

    def give(self, n: int) -> None:
        """Put back ``n`` tokens taken but not used (at most ``burst`` stored, as always)."""
        self._refill(self.clock())
        self.tokens = min(float(self.burst), self.tokens + n)

    def charge(self, n: int) -> None:
        """Take ``n`` tokens already spent, going below zero if need be (a debt the refill repays)."""
        self._refill(self.clock())
        self.tokens -= n

    def retry_after(self, n: int = 1) -> float:
        """Seconds until ``n`` tokens are available (a debt included)."""
        self._refill(self.clock())
        return max(0.0, (n - self.tokens) / self.rate)

    def is_full(self, now: float | None = None) -> bool:
        """Whether the bucket holds ``burst`` tokens (refilled up to ``now``)."""
        self._refill(self.clock() if now is None else now)
        return self.tokens >= self.burst
