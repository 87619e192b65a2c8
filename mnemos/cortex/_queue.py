"""A named CORTEX queue in memory: a heap by (priority, submit order), a running count, a backoff."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from mnemos.config import QueueConfig
from mnemos.cortex.job import Job

__all__ = ["Entry", "QueueState", "backoff_delay"]

Entry = tuple[int, int, str, str]
"""A heap entry: (-priority, submit order, job id, the pool the job goes to first)."""


def backoff_delay(config: QueueConfig, failures: int) -> float:
    """Seconds before retry number ``failures``: doubles from ``backoff.min`` up to ``backoff.max``."""
    return float(min(config.backoff.max, config.backoff.min * 2 ** max(0, failures - 1)))


@dataclass(eq=False)
class QueueState:
    """One named queue: a heap per (priority, submit order), its running count, its depth per pool."""

    name: str
    config: QueueConfig
    heap: list[Entry] = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    waiting: dict[str, int] = field(default_factory=dict)  # pool -> heap entries routed to it

    def push(self, job: Job, pool: str = "none") -> None:
        self.push_entry((-job.priority, job.seq, job.id, pool))

    def push_entry(self, entry: Entry) -> None:
        heapq.heappush(self.heap, entry)
        self.waiting[entry[3]] = self.waiting.get(entry[3], 0) + 1

    def pop(self) -> Entry:
        entry = heapq.heappop(self.heap)
        self.waiting[entry[3]] -= 1
        return entry
