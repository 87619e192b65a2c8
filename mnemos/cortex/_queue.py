"""A named CORTEX queue in memory: a heap by (priority, fair start tag, submit order), a running count, a backoff.

Within one priority level the owners of the waiting jobs take turns: start-time fair queuing. The
owner is the job's ``principal`` (``fairness: owner``; jobs without one share the owner ``""``)
or, with ``fairness: team``, its team (the ``mnemos.dev/team`` label the gateway sets from the
submitting credential), so that one team's keys share one turn; a job without a team is its
principal's own. Each job queued gets a start tag, one more than the larger of its owner's last
tag at that level and the level's virtual time (the tag of the job dispatched last: an entry
dispatch takes out and puts back because its pool is full moves nothing), so an owner that queued
10,000 jobs holds tags 1..10,000 and one that queues a job next gets a tag near the front, not
10,001. Priority still wins over fairness; one owner's jobs keep their submit order. A job queued
again after it was dispatched (a retry after its backoff, an attempt given back unstarted, CORTEX
restarted) takes the level's virtual time as its tag: the front of the current round, as it kept
its submit order before, without taking a turn from its owner; a queued job cancelled gives its
owner's turn back (``withdraw``). A level with nothing waiting starts over from 0, so rebuilding
the queues after a restart (every unfinished job queued again in submit order) gives one fair
order, the same on every restart (tags are not journaled: around the round in progress it can
differ from the order before the crash by one round, see docs/guides/jobs.md "Fair share"). A
queue with ``fairness: fifo`` orders by priority and submit order only.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from mnemos.config import QueueConfig
from mnemos.cortex.job import TEAM_LABEL, Job

__all__ = ["Entry", "QueueState", "backoff_delay"]

Entry = tuple[int, tuple[int, int], str, str]
"""A heap entry: (-priority, (fair start tag, submit order), job id, the pool the job goes to first)."""


def backoff_delay(config: QueueConfig, failures: int) -> float:
    """Seconds before retry number ``failures``: doubles from ``backoff.min`` up to ``backoff.max``."""
    return float(min(config.backoff.max, config.backoff.min * 2 ** max(0, failures - 1)))


@dataclass(eq=False)
class QueueState:
    """One named queue: a heap per (priority, fair start tag, submit order), its running count, its depth per pool."""

    name: str
    config: QueueConfig
    heap: list[Entry] = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    waiting: dict[str, int] = field(default_factory=dict)  # pool -> heap entries routed to it
    levels: dict[int, int] = field(default_factory=dict)  # -priority -> heap entries at that level
    vtime: dict[int, int] = field(default_factory=dict)  # -priority -> the start tag of the job dispatched last
    tags: dict[int, dict[str, int]] = field(default_factory=dict)  # -priority -> owner -> its last start tag

    def push(self, job: Job, pool: str = "none") -> None:
        level = -job.priority
        if not self.levels.get(level):  # nothing waits at this level: its turns start over
            self.vtime.pop(level, None)
            self.tags.pop(level, None)
        now = self.vtime.get(level, 0)
        if self.config.fairness == "fifo":  # submit order alone, whoever submitted
            tag = 0
        elif job.started_at is not None:  # dispatched before: back to the front of the current round
            tag = now
        else:
            owners = self.tags.setdefault(level, {})
            owner = self.owner(job)
            tag = owners[owner] = max(owners.get(owner, 0), now) + 1
        self.push_entry((level, (tag, job.seq), job.id, pool))

    def withdraw(self, job: Job) -> None:
        """A queued job was cancelled: the turn it took goes back to its owner. Its entry stays in
        the heap until dispatch passes it (and skips it), which keeps its level and its owners'
        tags as they were; without this, an owner who cancelled a backlog waited behind every
        other owner's backlog as long as the cancelled one would have run."""
        owners = self.tags.get(-job.priority)
        if self.config.fairness == "fifo" or job.started_at is not None or not owners:
            return  # a job queued again took no turn
        owner = self.owner(job)
        if owner in owners:
            owners[owner] -= 1

    def owner(self, job: Job) -> str:
        """Whose turn a job takes: its principal, or with ``fairness: team`` its team (else its principal)."""
        if self.config.fairness == "team":
            team = job.labels.get(TEAM_LABEL)
            return f"team={team}" if team else f"principal={job.principal or ''}"
        return job.principal or ""

    def push_entry(self, entry: Entry) -> None:
        heapq.heappush(self.heap, entry)
        self.waiting[entry[3]] = self.waiting.get(entry[3], 0) + 1
        self.levels[entry[0]] = self.levels.get(entry[0], 0) + 1

    def pop(self, take: bool = True) -> Entry:
        """The first entry, out of the heap; ``take``: it is dispatched (``took``). Dispatch pops
        with ``take=False`` and calls ``took`` once the job starts: an entry it puts back
        (``push_entry``, its pool was full) must not move the level's virtual time, which would
        push the jobs queued meanwhile a round back."""
        entry = heapq.heappop(self.heap)
        self.waiting[entry[3]] -= 1
        level = entry[0]
        self.levels[level] -= 1
        if not self.levels[level]:
            del self.levels[level]
        if take:
            self.took(entry)
        return entry

    def took(self, entry: Entry) -> None:
        """The job of ``entry`` (popped) is dispatched: its level's virtual time moves to its tag."""
        level, (tag, _) = entry[0], entry[1]
        if tag > self.vtime.get(level, 0):
            self.vtime[level] = tag
