"""The CORTEX job journal: every state change, group-committed to ENGRAM.

Records appended within one window (``settings.cortex.journal_batch_ms``), plus those appended
while the previous batch was being written, become ONE segment ``journal/cortex/<seq>.json``
(one write per batch, not per job). ``append`` returns a future that resolves once the batch
holding the records is durable: a submit is acknowledged, and a result shown, only then. The
lineage events recorded meanwhile are flushed beside the batch.

A failed write is retried (with backoff, until it succeeds): records are never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

from mnemos.cortex.job import Job, apply_record, join_logs, select
from mnemos.engram import Engram
from mnemos.errors import NotFoundError

__all__ = ["LOG", "JobJournal", "JournalView", "read_records", "rebuild"]

LOG = "journal/cortex"
log = logging.getLogger(__name__)


def read_records(engram: Engram) -> list[dict[str, Any]]:
    """Every journal record, in write order."""
    return list(engram.read_log(LOG))


def rebuild(records: Iterable[dict[str, Any]]) -> dict[str, Job]:
    """Every job's last state from the journal records."""
    jobs: dict[str, Job] = {}
    for rec in records:
        apply_record(jobs, rec)
    for job in jobs.values():
        job.committed = job.terminal
    return jobs


class JobJournal:
    """Group commit of journal records (and lineage events) to ENGRAM.

    Args:
        engram: the store.
        batch_ms: how long the first record of a batch waits for others.
        lineage: a ``LineageWriter`` flushed with each batch (optional).
    """

    def __init__(self, engram: Engram, batch_ms: float = 5.0, lineage: Any = None) -> None:
        self.engram = engram
        self.batch_s = max(0.0, batch_ms) / 1000.0
        self.lineage = lineage
        self.segments_written = 0
        self.records_written = 0
        self._buffer: list[dict[str, Any]] = []
        self._pending: asyncio.Future[None] | None = None
        self._kick: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def read(self) -> list[dict[str, Any]]:
        return read_records(self.engram)

    def append(self, *records: dict[str, Any]) -> asyncio.Future[None]:
        """Buffer ``records``; the future resolves when the batch holding them is durable.

        Call it from the event loop. Records appended in the same synchronous section always
        land in the same batch.
        """
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._kick = asyncio.Event()
            self._task = loop.create_task(self._run())
        self._buffer.extend(records)
        if self._pending is None:
            self._pending = loop.create_future()
        self._kick.set()  # type: ignore[union-attr]
        return self._pending

    async def flush(self) -> None:
        """Wait until everything appended so far is durable."""
        if self._pending is not None:
            await asyncio.shield(self._pending)

    async def _run(self) -> None:
        kick = self._kick
        while kick is not None:
            await kick.wait()
            kick.clear()
            if self.batch_s:
                await asyncio.sleep(self.batch_s)
            batch, future = self._buffer, self._pending
            self._buffer, self._pending = [], None
            if not batch or future is None:
                continue
            await self._write(batch)
            if not future.done():
                future.set_result(None)

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        delay = 0.05
        while True:
            try:
                writes: list[Awaitable[Any]] = [asyncio.to_thread(self.engram.append, LOG, batch)]
                if self.lineage is not None:
                    writes.append(asyncio.to_thread(self._flush_lineage))
                await asyncio.gather(*writes)
                break
            except Exception as exc:  # noqa: BLE001 - ENGRAM unreachable: retry, never drop records
                log.error("journal write failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.segments_written += 1
        self.records_written += len(batch)

    def _flush_lineage(self) -> None:
        try:
            self.lineage.flush()
        except Exception as exc:  # noqa: BLE001 - lineage is best effort; the journal is the record
            log.warning("lineage flush failed: %s", exc)


class JournalView:
    """Jobs read straight from the journal, without a cluster (``mnemos jobs list|get|logs`` offline).

    What it shows is the last committed state: a job that was running when CORTEX stopped
    shows as running until a CORTEX starts again and re-queues it.
    """

    def __init__(self, engram: Engram) -> None:
        self.engram = engram
        self.jobs = rebuild(read_records(engram))

    def _job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise NotFoundError(f"job {job_id!r} not found", param="id")
        return self.jobs[job_id]

    def get(self, job_id: str) -> dict[str, Any]:
        return self._job(job_id).view()

    def list(
        self,
        queue: str | None = None,
        status: str | None = None,
        limit: int = 100,
        labels: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        return select(self.jobs.values(), queue, status, limit, labels)

    def logs(self, job_id: str) -> str:
        from mnemos.cortex.codec import decode_text

        job = self._job(job_id)
        return join_logs([(e["attempt"], e["status"], decode_text(e["logs"], self.engram)) for e in job.logs])
