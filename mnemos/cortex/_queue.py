"""A named CORTEX queue in memory: a heap by (priority, fair turn, submit order), a running count, a backoff.

Within one priority level the owners of the waiting jobs take turns: start-time fair queuing. The
owner is the job's ``principal`` (``fairness: owner``; jobs without one share the owner ``""``)
or, with ``fairness: team``, its team (the ``mnemos.dev/team`` label the gateway sets from the
submitting credential), so that one team's keys share one turn; a job without a team is its
principal's own. Each job submitted is dealt a *turn* (a start tag; ``deal``) when CORTEX admits
it, one more than the larger of its owner's last turn still held at that level and the level's
virtual time (the turn of the job dispatched last: an entry dispatch takes out and puts back
because its pool is full moves nothing), so an owner that queued 10,000 jobs holds turns
1..10,000 and one that queues a job next gets a turn near the front, not 10,001. Priority still
wins over fairness; one owner's jobs keep their submit order. A job queued again after it was
dispatched (a retry after its backoff, an attempt given back unstarted, CORTEX restarted) takes
the level's virtual time as its turn (``again``): the front of the current round, as it kept its
submit order before, without taking a turn from its owner. A queue with ``fairness: fifo``
orders by priority and submit order only (no turns).

Turns are journaled (``turn`` on the submit and requeue records, kept in checkpoints), so a
restart rebuilds the exact live order (``recover``): each queued job gets its own turn back, and
the level's virtual time is the largest of the one the checkpoint kept (``virtual_times``: the job
that set it may have left memory with that checkpoint) and the turns of the level's jobs in memory
that were dispatched. Jobs journaled before turns were get turns dealt again in submit order, as before.

A queued job that is cancelled leaves the queue at once (``withdraw``: the depth, per pool and in
total, counts it no longer; its heap entry is skipped when it surfaces) and gives back its turn.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field

from mnemos.config import QueueConfig
from mnemos.cortex.job import TEAM_LABEL, Job

__all__ = ["Entry", "QueueState", "backoff_delay"]

Entry = tuple[int, tuple[int, int], str, str]
"""A heap entry: (-priority, (fair turn, submit order), job id, the pool the job goes to first)."""


def backoff_delay(config: QueueConfig, failures: int) -> float:
    """Seconds before retry number ``failures``: doubles from ``backoff.min`` up to ``backoff.max``."""
    return float(min(config.backoff.max, config.backoff.min * 2 ** max(0, failures - 1)))


@dataclass(eq=False)
class QueueState:
    """One named queue: a heap per (priority, fair turn, submit order), its running count, its depth per pool."""

    name: str
    config: QueueConfig
    heap: list[Entry] = field(default_factory=list)  # live entries, and cancelled ones not yet surfaced
    running: int = 0
    max_running: int = 0
    depth: int = 0  # jobs waiting (live heap entries)
    waiting: dict[str, int] = field(default_factory=dict)  # pool -> live entries routed to it
    levels: dict[int, int] = field(default_factory=dict)  # -priority -> live entries at that level
    vtime: dict[int, int] = field(default_factory=dict)  # -priority -> the turn of the job dispatched last
    held: dict[int, dict[str, list[int]]] = field(default_factory=dict)  # -priority -> owner -> turns, ascending
    turns: dict[str, tuple[int, str, int]] = field(default_factory=dict)  # job id -> (-priority, owner, turn) held
    entries: dict[str, Entry] = field(default_factory=dict)  # job id -> its live heap entry

    # -- turns ----------------------------------------------------------------------------------
    def deal(self, job: Job) -> int | None:
        """A turn for a job submitted now (it holds it until dispatched or withdrawn); ``None`` for fifo."""
        if self.config.fairness == "fifo":
            return None
        level, owner = -job.priority, self.owner(job)
        owned = self.held.setdefault(level, {}).setdefault(owner, [])
        turn = max(owned[-1] if owned else 0, self.vtime.get(level, 0)) + 1
        owned.append(turn)
        self.turns[job.id] = (level, owner, turn)
        return turn

    def again(self, job: Job) -> int | None:
        """The turn of a job queued again after it was dispatched: the level's virtual time (no turn of its owner's)."""
        return None if self.config.fairness == "fifo" else self.vtime.get(-job.priority, 0)

    def recover(self, job: Job) -> None:
        """Take back what a job loaded at (re)start says of the turns, before anything is queued: a
        job dispatched once moves its level's virtual time up to its turn, a queued one holds its turn."""
        if self.config.fairness == "fifo" or job.turn is None:
            return
        level = -job.priority
        if job.started_at is not None:
            self.vtime[level] = max(self.vtime.get(level, 0), job.turn)
        elif job.status == "queued" and job.id not in self.turns:
            self._hold(job.id, level, self.owner(job), job.turn)

    def virtual_times(self) -> dict[int, int]:
        """Each priority's virtual time (what a checkpoint keeps: the job that set it may leave memory with it)."""
        return {-level: turn for level, turn in self.vtime.items()}

    def resume(self, vtimes: dict[int, int]) -> None:
        """Take back the virtual times a checkpoint kept (``virtual_times``), before any job is recovered."""
        if self.config.fairness != "fifo":
            for priority, turn in vtimes.items():
                self.vtime[-priority] = max(self.vtime.get(-priority, 0), turn)

    def release(self, job_id: str) -> None:
        """The job gives back the turn it holds (it was cancelled, withdrawn, or cannot run).

        Exactly: the owner's next job is dealt ``max(its latest turn still held, virtual time) + 1``.
        So cancelling an owner's latest queued jobs gives it the turn its next job would have had if
        they had never been submitted. A turn is never dealt again to a job that holds one (turns
        are journaled): cancelling a job while a later job of its owner still waits moves nothing
        for that later job, and the owner's next job comes after it; once it too has been
        dispatched or cancelled, the owner starts again from the virtual time like any other."""
        held = self.turns.pop(job_id, None)
        if held is None:
            return  # a job queued again holds none; fifo deals none
        level, owner, turn = held
        owners = self.held[level]
        owned = owners[owner]
        del owned[bisect.bisect_left(owned, turn)]
        if not owned:
            del owners[owner]
            if not owners:
                del self.held[level]

    def withdraw(self, job: Job) -> None:
        """A queued job was cancelled: it leaves the queue's depth at once, and gives back its turn."""
        entry = self.entries.pop(job.id, None)
        if entry is not None:
            self._count(entry, -1)  # its heap entry stays until it surfaces, then ``pop`` skips it
            if len(self.heap) > 2 * self.depth + 64:  # mostly cancelled ones (a backlog): keep the live only
                self.heap = list(self.entries.values())
                heapq.heapify(self.heap)
        self.release(job.id)

    def owner(self, job: Job) -> str:
        """Whose turn a job takes: its principal, or with ``fairness: team`` its team (else its principal)."""
        if self.config.fairness == "team":
            team = job.labels.get(TEAM_LABEL)
            return f"team={team}" if team else f"principal={job.principal or ''}"
        return job.principal or ""

    # -- the heap -------------------------------------------------------------------------------
    def push(self, job: Job, pool: str = "none") -> None:
        """Queue a job with its turn (dealt one now if it has none: a job journaled before turns were)."""
        if self.config.fairness == "fifo":  # submit order alone, whoever submitted
            tag = 0
        elif job.turn is not None:
            tag = job.turn
            if job.started_at is None and job.id not in self.turns:
                self._hold(job.id, -job.priority, self.owner(job), tag)
        elif job.started_at is not None:  # dispatched before: back to the front of the current round
            tag = self.vtime.get(-job.priority, 0)
        else:
            tag = job.turn = self.deal(job) or 0
        self.push_entry((-job.priority, (tag, job.seq), job.id, pool))

    def push_entry(self, entry: Entry) -> None:
        old = self.entries.get(entry[2])
        if old is not None:  # queued twice: the older entry is dead
            self._count(old, -1)
        heapq.heappush(self.heap, entry)
        self.entries[entry[2]] = entry
        self._count(entry, 1)

    def head(self) -> Entry | None:
        """The first live entry (left in the heap), or ``None`` when nothing waits."""
        while self.heap and self.entries.get(self.heap[0][2]) is not self.heap[0]:
            heapq.heappop(self.heap)  # withdrawn while it waited
        return self.heap[0] if self.heap else None

    def pop(self, take: bool = True) -> Entry:
        """The first live entry, out of the heap (``IndexError`` when nothing waits); ``take``: it is
        dispatched (``took``). Dispatch pops with ``take=False`` and calls ``took`` once the job
        starts: an entry it puts back (``push_entry``, its pool was full) must not move the level's
        virtual time, which would push the jobs queued meanwhile a round back."""
        if self.head() is None:
            raise IndexError(f"queue {self.name}: nothing waits")
        entry = heapq.heappop(self.heap)
        del self.entries[entry[2]]
        self._count(entry, -1)
        if take:
            self.took(entry)
        return entry

    def took(self, entry: Entry) -> None:
        """The job of ``entry`` (popped) is dispatched: its level's virtual time moves to its turn,
        and its owner holds that turn no longer."""
        level, (tag, _) = entry[0], entry[1]
        self.release(entry[2])
        if self.config.fairness != "fifo" and tag > self.vtime.get(level, 0):
            self.vtime[level] = tag

    def _hold(self, job_id: str, level: int, owner: str, turn: int) -> None:
        bisect.insort(self.held.setdefault(level, {}).setdefault(owner, []), turn)
        self.turns[job_id] = (level, owner, turn)

    def _count(self, entry: Entry, n: int) -> None:
        self.depth += n
        self.waiting[entry[3]] = self.waiting.get(entry[3], 0) + n
        level = entry[0]
        self.levels[level] = self.levels.get(level, 0) + n
        if not self.levels[level]:
            del self.levels[level]
