"""Background threads that share a process with a latency-sensitive event loop.

CPython hands the GIL to a waiting thread only every ``sys.getswitchinterval()`` (5 ms) unless
the thread holding it blocks. A flusher that builds and encodes a batch for 20-30 ms (the
gateway's lineage of 2 s of traffic) therefore delays each request its replica's event loop is
serving meanwhile by up to 5 ms at a time, which showed up as the gateway's p99. Background work
goes through ``paced``: every few items it sleeps briefly, which releases the GIL, so the loop
waits one slice at most.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["paced"]

T = TypeVar("T")
_PAUSE_S = 0.0002


def paced(items: Iterable[T], every: int = 64) -> Iterator[T]:
    """``items``, with a short sleep (the GIL released) after every ``every`` of them."""
    for i, item in enumerate(items, 1):
        yield item
        if i % every == 0:
            time.sleep(_PAUSE_S)
