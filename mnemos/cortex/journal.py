"""The CORTEX job journal: every state change, group-committed to ENGRAM.

Records appended within one window (``settings.cortex.journal_batch_ms``), plus those appended
while the previous batch was being written, become ONE segment ``journal/cortex/<seq>.json``
(one write per batch, not per job). ``append`` returns a future that resolves once the batch
holding the records is durable: a submit is acknowledged, and a result shown, only then. The
lineage events recorded meanwhile are flushed beside the batch.

A failed write is retried with backoff: records already applied in CORTEX's memory are never
dropped. After a few failed tries the journal is ``failing`` (ENGRAM is down) until a write
succeeds again; callers bound how long they wait (a submit answers 503 after
``settings.cortex.journal_timeout``) and ``withdraw`` what they no longer acknowledge.

Every ``checkpoint_every`` records, the writer takes a checkpoint (``snapshot()``) at the moment
it takes a batch — memory then holds exactly the records up to that batch — and writes it, in
the background, once the batch is durable (``mnemos.cortex.checkpoint``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from mnemos.config import undeclared_queue
from mnemos.cortex.checkpoint import Cut, find_archived, load
from mnemos.cortex.job import Job, apply_record, join_logs, select, shown_id
from mnemos.cortex.records import JournalRecord, RecordBase, SubmitRecord, WithdrawRecord, dump_record, parse_record
from mnemos.engram import Engram
from mnemos.errors import NotFoundError

__all__ = ["LOG", "JobJournal", "JournalView", "read_records", "rebuild"]

LOG = "journal/cortex"
FAILING_AFTER = 3
"""Failed tries of one write after which the journal counts as failing (ENGRAM down)."""
log = logging.getLogger(__name__)


def read_records(engram: Engram) -> list[dict[str, Any]]:
    """Every journal record still in the journal, in write order, as stored (JSON objects)."""
    return list(engram.read_log(LOG))


def rebuild(records: Iterable[dict[str, Any] | JournalRecord]) -> dict[str, Job]:
    """Every job's last state from the journal records (stored or typed; unknown kinds skipped)."""
    jobs: dict[str, Job] = {}
    for raw in records:
        if (rec := parse_record(raw)) is not None:
            apply_record(jobs, rec)
    for job in jobs.values():
        job.committed = job.terminal
    return jobs


class JobJournal:
    """Group commit of journal records (and lineage events) to ENGRAM, and checkpoints.

    Args:
        engram: the store.
        batch_ms: how long the first record of a batch waits for others.
        lineage: a ``LineageWriter`` flushed with each batch (optional).
        checkpoint_every: records between checkpoints (0: none).
        snapshot: takes a checkpoint in memory (called on the event loop, between batches).
        on_checkpoint: called with the cut and whether it was written.
        last_segment: the newest journal segment already covered by the state in memory.
    """

    def __init__(
        self,
        engram: Engram,
        batch_ms: float = 5.0,
        lineage: Any = None,
        *,
        checkpoint_every: int = 0,
        snapshot: Callable[[], Cut] | None = None,
        on_checkpoint: Callable[[Cut, bool], None] | None = None,
        last_segment: str | None = None,
    ) -> None:
        self.engram = engram
        self.batch_s = max(0.0, batch_ms) / 1000.0
        self.lineage = lineage
        self.checkpoint_every = checkpoint_every
        self.snapshot = snapshot
        self.on_checkpoint = on_checkpoint
        self.on_append: Callable[[tuple[JournalRecord, ...]], None] | None = None
        """Called with each batch's records once they are durable (the event stream)."""
        self.last_segment = last_segment
        self.segments_written = 0
        self.records_written = 0
        self.checkpoints_written = 0
        self.failing = False
        self._since_checkpoint = 0
        self._checkpoint_wanted = False
        self.last_cut_at = time.monotonic()  # when the last checkpoint was taken (or the journal opened)
        self._checkpointing: asyncio.Future[Any] | None = None
        self._cut_waiters: list[asyncio.Future[bool]] = []
        self._buffer: list[JournalRecord] = []
        self._pending: asyncio.Future[None] | None = None
        self._kick: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def read(self) -> list[dict[str, Any]]:
        return read_records(self.engram)

    def append(self, *records: JournalRecord) -> asyncio.Future[None]:
        """Buffer ``records``; the future resolves when the batch holding them is durable.

        Call it from the event loop. Records appended in the same synchronous section always
        land in the same batch.

        Raises:
            TypeError: a record is not one of ``mnemos.cortex.records`` (refused here, where the
                caller sees it, not in the writer, whose failure would leave every waiter waiting).
        """
        for rec in records:
            if not isinstance(rec, RecordBase):
                raise TypeError(f"journal records are mnemos.cortex.records models, not {type(rec).__name__}")
        self._ensure_writer()
        self._buffer.extend(records)
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_future()
        self._kick.set()  # type: ignore[union-attr]
        return self._pending

    def withdraw(self, ids: set[str]) -> None:
        """Take back the submit records of ``ids`` (their submit answered 503, not acknowledged).

        Records still in the buffer are removed; for those already being written (the write
        may or may not land: ambiguous) a ``withdraw`` record follows, so a replay forgets them.
        """
        gone = {r.id for r in self._buffer if isinstance(r, SubmitRecord) and r.id in ids}
        self._buffer[:] = [r for r in self._buffer if not (isinstance(r, SubmitRecord) and r.id in gone)]
        rest = sorted(ids - gone)
        if rest:
            now = time.time()
            self.append(*(WithdrawRecord(id=job_id, ts=now) for job_id in rest))

    def request_checkpoint(self) -> asyncio.Future[bool]:
        """Take a checkpoint at the next batch (or now, when nothing is being written).

        Returns a future resolving, once a checkpoint taken after this call is written (or
        failed), to whether it was written.
        """
        self._checkpoint_wanted = True
        self._ensure_writer()
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._cut_waiters.append(done)
        self._kick.set()  # type: ignore[union-attr]
        return done

    async def flush(self) -> None:
        """Wait until everything appended so far is durable."""
        if self._pending is not None:
            await asyncio.shield(self._pending)

    async def flush_checkpoint(self) -> None:
        """Wait for the checkpoint being written, if one is."""
        if self._checkpointing is not None:
            await asyncio.shield(self._checkpointing)

    def _ensure_writer(self) -> None:
        if self._task is None or self._task.done():
            self._kick = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        kick = self._kick
        while kick is not None:
            await kick.wait()
            kick.clear()
            if self.batch_s and self._buffer:
                await asyncio.sleep(self.batch_s)
            batch, future = self._buffer, self._pending
            self._buffer, self._pending = [], None
            cut = self._cut(len(batch))  # now: memory holds exactly the records up to this batch
            if batch:
                self.last_segment = await self._write(batch)
                if self.on_append is not None:
                    try:
                        self.on_append(tuple(batch))
                    except Exception:  # noqa: BLE001 - announcing is best effort; the journal is the record
                        log.exception("on_append failed")
            if future is not None and not future.done():
                future.set_result(None)
            if cut is not None:
                waiters, self._cut_waiters = self._cut_waiters, []
                self._checkpointing = asyncio.ensure_future(self._write_checkpoint(cut, self.last_segment, waiters))

    def _cut(self, size: int) -> Cut | None:
        self._since_checkpoint += size
        due = self._checkpoint_wanted or (self.checkpoint_every and self._since_checkpoint >= self.checkpoint_every)
        if not due or self.snapshot is None or (self._checkpointing is not None and not self._checkpointing.done()):
            return None
        self._checkpoint_wanted = False
        self._since_checkpoint = 0
        self.last_cut_at = time.monotonic()
        return self.snapshot()

    async def _write_checkpoint(self, cut: Cut, after: str | None, waiters: list[asyncio.Future[bool]]) -> None:
        ok = False
        try:
            await asyncio.to_thread(cut.write, self.engram, after)
            self.checkpoints_written += 1
            ok = True
        except Exception as exc:  # noqa: BLE001 - the journal still holds everything; the next one retries
            log.warning("checkpoint failed (%s); the next one will try again", exc)
            self._checkpoint_wanted = True
        if self.on_checkpoint is not None:
            self.on_checkpoint(cut, ok)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(ok)
        if ok and self._checkpoint_wanted and self._kick is not None:
            self._kick.set()  # one was asked for while this one was being written

    async def _write(self, batch: list[JournalRecord]) -> str:
        delay, tries = 0.05, 0
        stored = [dump_record(rec) for rec in batch]
        while True:
            try:
                writes: list[Awaitable[Any]] = [asyncio.to_thread(self.engram.append, LOG, stored)]
                if self.lineage is not None:
                    writes.append(asyncio.to_thread(self._flush_lineage))
                key = (await asyncio.gather(*writes))[0]
                break
            except Exception as exc:  # noqa: BLE001 - ENGRAM unreachable: retry, never drop applied records
                tries += 1
                self.failing = self.failing or tries >= FAILING_AFTER
                log.error("journal write failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.failing = False
        self.segments_written += 1
        self.records_written += len(batch)
        return str(key)

    def _flush_lineage(self) -> None:
        try:
            self.lineage.flush()
        except Exception as exc:  # noqa: BLE001 - lineage is best effort; the journal is the record
            log.warning("lineage flush failed: %s", exc)


class JournalView:
    """Jobs read straight from the journal, without a cluster (``mnemos jobs list|get|logs`` offline).

    What it shows is the last committed state: a job that was running when CORTEX stopped
    shows as running until a CORTEX starts again and re-queues it. It reads what a restarting
    CORTEX reads (the newest checkpoint and the journal after it); finished jobs past their
    retention come from the archive.
    """

    def __init__(self, engram: Engram, queues: Iterable[str] | None = None) -> None:
        self.engram = engram
        self.jobs = load(engram, LOG).jobs
        self.queues = None if queues is None else set(queues)  # the declared ones (``list`` checks ``queue``)

    def _job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id) or find_archived(self.engram, job_id)
        if job is None:
            raise NotFoundError(f"job {shown_id(job_id)} not found", param="id")
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        return self._job(job_id).view()

    def list(
        self,
        queue: str | None = None,
        status: str | None = None,
        limit: int = 100,
        labels: dict[str, str] | None = None,
        principal: str | None = None,
        after: str | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs, newest first; ``after``: only those submitted before that job (see ``Cortex.list``).
        A ``queue`` neither declared nor holding a job is a ``ValidationError`` listing the declared ones."""
        declared = self.queues is None or queue is None or queue in self.queues
        if not declared and all(j.queue != queue for j in self.jobs.values()):  # one that was: its jobs
            raise undeclared_queue(str(queue), self.queues or ())
        before = None
        if after is not None:
            try:
                before = self._job(after).seq
            except NotFoundError:
                raise NotFoundError(f"after: no job {after!r} to list after", param="after") from None
        return select(self.jobs.values(), queue, status, limit, labels, principal, before)

    def logs(self, job_id: str) -> str:
        from mnemos.neuron.codec import decode_text

        job = self._job(job_id)
        return join_logs([(e["attempt"], e["status"], decode_text(e["logs"], self.engram)) for e in job.logs])
