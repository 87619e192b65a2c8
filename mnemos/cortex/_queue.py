"""A named CORTEX queue in memory: a heap by (priority, submit order), a running count, a backoff."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from mnemos.config import QueueConfig
from mnemos.cortex.job import Job

__all__ = ["QueueState", "backoff_delay"]


def backoff_delay(config: QueueConfig, failures: int) -> float:
    """Seconds before retry number ``failures``: doubles from ``backoff.min`` up to ``backoff.max``."""
    return float(min(config.backoff.max, config.backoff.min * 2 ** max(0, failures - 1)))


@dataclass(eq=False)
class QueueState:
    """One named queue: a heap per (priority, submit order) and its running count."""

    name: str
    config: QueueConfig
    heap: list[tuple[int, int, str]] = field(default_factory=list)
    running: int = 0
    max_running: int = 0

    def push(self, job: Job) -> None:
        heapq.heappush(self.heap, (-job.priority, job.seq, job.id))
