"""CORTEX: one named, restartable async Ray actor that admits, queues, dispatches and commits jobs.

Named ``cortex`` in namespace ``mnemos``, detached, ``max_restarts=-1``. On (re)start it reads
the newest checkpoint and the journal after it (``mnemos.cortex.checkpoint``), re-queues what
was queued, running or waiting for a retry, and never runs again a job whose result is
committed. Dispatch is event driven: a job is sent to a NEURON worker as an actor call whose
ObjectRef CORTEX awaits — no polling anywhere.

Guarantees:

* durable before visible: a submit returns once its journal record is durable, a duplicate
  submit (same id) only once the first is; a result, failure or cancel is shown to readers
  (and announced on the event stream) only once its record is durable;
* when the journal cannot be written (ENGRAM down), a submit answers ``UnavailableError``
  (503) within ``cortex.journalTimeout`` — at once while the journal is failing — and what it
  held back is withdrawn: nothing is half-accepted;
* a job's result or failure is committed by exactly one journal record; a job may run more
  than once (its worker died, CORTEX restarted mid-run), never committed twice;
* finished jobs leave memory ``cortex.retention`` seconds after they finished and stay
  readable (``get``) from the archive; an idempotency key is remembered as long.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import time
from typing import Any

import ray
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from mnemos._actors import CORTEX, NAMESPACE
from mnemos._heap import freeze_heap
from mnemos._model import to_validation_error
from mnemos.config import CortexSettings, NeuronSettings, undeclared_queue
from mnemos.cortex._dispatch import Dispatcher
from mnemos.cortex._queue import QueueState
from mnemos.cortex.admission import PolicyCache, check_quotas, check_resources, usage_of
from mnemos.cortex.checkpoint import Cut, find_archived, job_state, load
from mnemos.cortex.job import (
    _JOB_ID,
    ACTIVE,
    STATUSES,
    TEAM_LABEL,
    Job,
    JobResources,
    JobSubmission,
    apply_record,
    digest_call,
    join_logs,
    new_job_id,
    select,
    shown_id,
)
from mnemos.cortex.journal import LOG, JobJournal
from mnemos.cortex.records import CancelRecord, FailRecord, JournalRecord, RequeueRecord
from mnemos.engram import Engram
from mnemos.errors import ConflictError, NotFoundError, UnavailableError, ValidationError
from mnemos.neuron.codec import decode_text
from mnemos.neuron.pools import PoolSet
from mnemos.trace.events import publish as announce
from mnemos.trace.lineage import LineageWriter

__all__ = ["ACTOR_NAME", "NAMESPACE", "Cortex", "CortexActor"]

ACTOR_NAME = CORTEX
log = logging.getLogger(__name__)
_FINAL = frozenset({"result", "fail", "cancel"})
_SUBMISSIONS: TypeAdapter[list[JobSubmission]] = TypeAdapter(list[JobSubmission])
EVICT_EVERY_S = 30.0
"""Without a checkpoint for this long, one is taken when finished jobs are past their retention."""
_EVENT_FIELDS = ("id", "name", "queue", "function", "status", "attempts", "principal", "worker", "submittedAt",
                 "startedAt", "finishedAt", "error")  # fmt: skip


class Cortex(Dispatcher):
    """The scheduler (made a Ray actor as ``CortexActor``; see ``mnemos.cortex.control.ensure``).

    Args:
        cortex: ``settings.cortex`` (queues, affinity, journal window, inline result size).
        neuron: ``settings.neuron`` (pools).
        engram: where the journal, lineage, large payloads and large results live.
        fingerprint: identifies the settings it was started with.
    """

    def __init__(self, cortex: CortexSettings, neuron: NeuronSettings, engram: Engram, fingerprint: str = "") -> None:
        self.settings = cortex
        self.engram = engram
        self.fingerprint = fingerprint
        self.lineage = LineageWriter(engram)
        started = time.perf_counter()
        loaded = load(engram, LOG)
        self.loaded = {
            "checkpoint": loaded.checkpoint, "tailRecords": loaded.tail, "jobs": len(loaded.jobs),
            "seconds": round(time.perf_counter() - started, 3),
        }  # fmt: skip
        self.jobs: dict[str, Job] = loaded.jobs
        self._archiving: dict[str, Job] = {}  # left memory; being written to the archive
        self._seq = self._replayed_seq = loaded.seq
        self.journal = JobJournal(
            engram, cortex.journal_batch_ms, self.lineage, checkpoint_every=cortex.checkpoint_records,
            snapshot=self._snapshot, on_checkpoint=self._checkpointed, last_segment=loaded.after,
        )  # fmt: skip
        self.journal.on_append = self._durable
        self.queues = {name: QueueState(name, cfg) for name, cfg in cortex.queues.items()}
        for name, vtimes in loaded.vtime.items():  # the virtual times the checkpoint kept, then the jobs' turns
            if (queue := self.queues.get(name)) is not None:
                queue.resume(vtimes)
        for job in self.jobs.values():  # the turns as they were (journaled), before anything is queued again
            if (queue := self.queues.get(job.queue)) is not None:
                queue.recover(job)
        self.pools = PoolSet(neuron.pools, engram, cortex.inline_result_bytes, cortex.affinity.gpu_preferred)
        self.pools.start()
        self.started_at = time.time()
        self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self.policies = PolicyCache(engram)
        self._wake = asyncio.Event()
        self._abandoned = {}  # (job id, attempt) -> Abandoned: cancelled or timed out, maybe still running
        loop = asyncio.get_event_loop()
        self._background = [
            loop.create_task(self._dispatch_loop()), loop.create_task(self._resume()),
            loop.create_task(self._housekeeping()),
        ]  # fmt: skip
        freeze_heap()  # what is loaded now lives as long as CORTEX: no full collection walks it again

    def _durable(self, records: tuple[JournalRecord, ...]) -> None:
        """A batch is durable: its final records become visible, then it is announced."""
        for rec in records:
            if rec.t in _FINAL and (job := self.jobs.get(rec.id)) is not None:
                job.shown = None
        self._announce(records)

    def _announce(self, records: tuple[JournalRecord, ...]) -> None:
        """Each journaled transition on the event stream as ``job.<status>`` (owner: the submitter).

        The type is the status the job *shows* (its last durable state), not the one in memory: a
        batch holding a job's start can become durable after the job has already failed in memory,
        and announcing ``job.failed`` then would tell subscribers of a failure not yet journaled,
        with the running job's fields (no error). The failure is announced with its own batch.
        A job is announced once per batch (a start and a result written together are one event)."""
        for job_id in dict.fromkeys(rec.id for rec in records):
            job = self.jobs.get(job_id)
            if job is not None:
                view = job.view(result=False)
                announce(f"job.{view['status']}", f"job:{job.id}", owner=job.principal,
                         **{k: view.get(k) for k in _EVENT_FIELDS})  # fmt: skip

    # -- submit -------------------------------------------------------------------------------
    async def submit_many(
        self, submissions: list[JobSubmission] | list[dict[str, Any]], principal: str | None = None
    ) -> list[str]:
        """Admit and queue jobs (all or none); returns their ids once the journal holds them.

        Args:
            submissions: the jobs, validated where they were made (``JobsAPI``, ``/v1/jobs``);
                plain dicts (operators, tests) are validated here as ``JobSubmission``.
            principal: who submits (else each submission's own ``principal``).

        Raises:
            ValidationError: a plain dict is not a valid ``JobSubmission``.
            UnavailableError: the journal could not be written within ``journalTimeout`` (or is
                failing now); none of these jobs was accepted.
        """
        self._journal_up()
        try:
            subs = _SUBMISSIONS.validate_python(submissions)  # JobSubmission objects pass as they are
        except PydanticValidationError as exc:
            raise to_validation_error(exc) from None
        policies = await self.policies.get()
        usage = usage_of(policies, (j for j in self.jobs.values() if j.status in ACTIVE)) if policies else {}
        new: list[Job] = []
        ids: list[str] = []
        waits: set[asyncio.Future[None]] = set()  # earlier submits of the same ids, not yet durable
        try:
            for sub in subs:
                given = sub.id
                if given and given in self.jobs:  # idempotent: the same id is the same job, of the same submitter
                    if self.jobs[given].principal != (principal or sub.principal):
                        raise ConflictError(f"id: {given!r} is already used by another job; choose another id",
                                            param="id")  # fmt: skip
                    _check_same_call(self.jobs[given], sub)
                    ids.append(given)
                    if self.jobs[given].accepted is not None:
                        waits.add(self.jobs[given].accepted)  # type: ignore[arg-type]
                    continue
                job = self._new_job(sub, principal)
                if policies:
                    check_quotas(job, policies, usage)
                check_resources(job, self.pools)
                self.jobs[job.id] = job
                new.append(job)
                ids.append(job.id)
        except BaseException:
            for job in new:
                self.jobs.pop(job.id, None)
            raise
        if new:
            for job in new:  # dealt in submit order and journaled with it: a restart queues each with its own turn
                job.turn = self.queues[job.queue].deal(job)
            durable = self.journal.append(*(job.submit_record() for job in new))
            for job in new:
                job.accepted = durable
            waits.add(durable)
        if waits:
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.gather(*waits)), self.settings.journal_timeout)
            except asyncio.TimeoutError:
                self._withdraw(new)
                raise UnavailableError(
                    f"the job journal could not be written within {self.settings.journal_timeout:g}s "
                    "(ENGRAM unreachable?): nothing was accepted; submit again with the same ids",
                    param="engram",
                ) from None
        for job in new:
            job.accepted = None
            self.lineage.record(
                f"job:{job.id}", "intent", parents=job.parents, principal=job.principal,
                function=job.function, queue=job.queue, priority=job.priority, labels=job.labels,
            )  # fmt: skip
            if job.status == "queued":
                self._enqueue(job)
        if any(job_id not in self.jobs for job_id in ids):  # a duplicate of a submit that was withdrawn
            raise UnavailableError("the job journal could not be written: submit again with the same ids")
        if new:
            self._wake.set()
        return ids

    def _journal_up(self) -> None:
        if self.journal.failing:
            raise UnavailableError(
                "the job journal cannot be written now (ENGRAM unreachable): nothing was accepted; try again",
                param="engram",
            )

    def _withdraw(self, jobs: list[Job]) -> None:
        """Forget jobs whose submit answered 503 (their records are taken back or withdrawn)."""
        for job in jobs:
            self.jobs.pop(job.id, None)
            if (queue := self.queues.get(job.queue)) is not None:
                queue.withdraw(job)  # its turn goes back
        if jobs:
            self.journal.withdraw({job.id for job in jobs})

    def _new_job(self, sub: JobSubmission, principal: str | None) -> Job:
        queue = self.queues.get(sub.queue)
        if queue is None:
            raise undeclared_queue(sub.queue, self.queues)
        self._seq += 1
        pickled = sub.payload is not None or sub.payload_digest is not None  # the call travels in the payload
        return Job(
            id=sub.id or new_job_id(),
            queue=queue.name,
            function=sub.function,
            priority=sub.priority,
            seq=self._seq,
            payload=sub.payload,
            payload_digest=sub.payload_digest,
            args=None if pickled else sub.args,
            kwargs=None if pickled else sub.kwargs,
            resources=sub.resources.model_dump(exclude_defaults=True),
            max_attempts=sub.max_attempts or queue.config.max_attempts,
            timeout=sub.timeout or queue.config.timeout,
            labels=dict(sub.labels),
            name=sub.name,
            principal=principal or sub.principal,
            parents=list(sub.parents),
            trace=dict(sub.trace),
            submitted_at=time.time(),
        )

    async def retry(self, job_id: str, principal: str | None = None, team: str | None = None) -> str:
        """Submit a failed or cancelled job again as a new job; returns the new id.

        ``principal``: the new job's owner (default: the old one's); ``team``: the owner's team, for
        the ``mnemos.dev/team`` label quotas count by (``None``: the old label; ``""``: none). What
        the caller may run again is the gateway's to check (``mnemos.cortex.http.check_retry``)."""
        old = await self._find(job_id)
        if old.status not in ("failed", "cancelled"):
            raise ConflictError(
                f"job {job_id} is {old.status}: only failed or cancelled jobs can be retried", param="id"
            )
        labels = dict(old.labels)
        if team is not None:
            labels.pop(TEAM_LABEL, None)
            labels.update({TEAM_LABEL: team} if team else {})
        again = JobSubmission(
            id=None, queue=old.queue, priority=old.priority, resources=JobResources.model_validate(old.resources),
            max_attempts=old.max_attempts, timeout=old.timeout, labels=labels, name=old.name,
            parents=[f"job:{old.id}"], function=old.function, args=old.args or [], kwargs=old.kwargs or {},
            payload=old.payload, payload_digest=old.payload_digest, principal=principal or old.principal,
            trace=old.trace,
        )  # fmt: skip
        return (await self.submit_many([again], principal))[0]

    # -- dispatch -----------------------------------------------------------------------------
    async def _resume(self) -> None:
        """Queue again every job the journal left unfinished (after a restart)."""
        now = time.time()
        loop = asyncio.get_running_loop()
        records: list[JournalRecord] = []
        failed: list[Job] = []
        for job in sorted(self.jobs.values(), key=lambda j: j.seq):
            if job.terminal or job.seq > self._replayed_seq:
                continue
            queue = self.queues.get(job.queue)
            if queue is None:
                records.append(FailRecord(id=job.id, error=f"queue {job.queue!r} is no longer declared", ts=now))
                apply_record(self.jobs, records[-1])
                failed.append(job)
                continue
            if job.status == "retrying" and job.retry_at and job.retry_at > now:
                loop.call_later(job.retry_at - now, self._requeue, job.id)
                continue
            if job.status != "queued":
                records.append(RequeueRecord(id=job.id, reason="cortex restarted", turn=queue.again(job), ts=now))
                apply_record(self.jobs, records[-1])
            self._enqueue(job)
        self._wake.set()
        if records:
            await asyncio.shield(self.journal.append(*records))
        for job in failed:
            job.committed = True

    # -- housekeeping: autoscaling, retention, checkpoints ----------------------------------------
    async def _housekeeping(self) -> None:
        """Trim idle workers, ask the autoscaler for what the pools want, and let finished jobs go."""
        idle = [p.config.idle_timeout / 4 for p in self.pools.pools.values()]
        tick = max(0.5, min(10.0, self.settings.retention / 2, *idle))
        while True:
            await asyncio.sleep(tick)
            try:
                self.pools.trim()
                self.pools.request_capacity()
                quiet = time.monotonic() - self.journal.last_cut_at >= EVICT_EVERY_S
                if quiet and self._evictable():  # busy journals checkpoint by record count anyway
                    self.journal.request_checkpoint()
            except Exception:  # noqa: BLE001 - keep the housekeeping going whatever one round did
                log.exception("housekeeping round failed")

    def _evictable(self) -> bool:
        horizon = time.time() - self.settings.retention
        return any(j.committed and j.terminal and (j.finished_at or 0) <= horizon for j in self.jobs.values())

    def _snapshot(self) -> Cut:
        """A checkpoint of memory now; finished jobs past their retention leave memory with it (the
        queues' virtual times, which a restart cannot rebuild without them, are kept in it)."""
        horizon = time.time() - self.settings.retention
        live, evicted = [], []
        for job in list(self.jobs.values()):
            state = job_state(job)
            if job.committed and job.terminal and (job.finished_at or 0) <= horizon:
                evicted.append(state)
                del self.jobs[job.id]
                self._archiving[job.id] = job
            else:
                live.append(state)
        vtime = {q.name: times for q in self.queues.values() if (times := q.virtual_times())}
        return Cut(jobs=live, evicted=evicted, seq=self._seq, vtime=vtime)

    def _checkpointed(self, cut: Cut, ok: bool) -> None:
        for state in cut.evicted:
            job = self._archiving.pop(state["id"], None)
            if not ok and job is not None:
                self.jobs.setdefault(job.id, job)  # not archived: it stays in memory until the next one
        if ok and len(cut.evicted) >= 1000:
            _give_back_memory()

    async def checkpoint(self) -> dict[str, Any]:
        """Take a checkpoint now and wait until it is written (operators, tests, benchmarks)."""
        await asyncio.shield(self.journal.request_checkpoint())
        return dict((await self.stats())["journal"])

    # -- queries and control ------------------------------------------------------------------
    def _job(self, job_id: str) -> Job:
        """A job in memory whose submit is durable (``NotFoundError`` otherwise)."""
        job = self.jobs.get(job_id) or self._archiving.get(job_id)
        if job is None or (job.accepted is not None and not job.accepted.done()):
            raise NotFoundError(f"job {shown_id(job_id)} not found", param="id")
        return job

    async def _find(self, job_id: str) -> Job:
        """A job in memory, or one that left it, read back from the archive."""
        try:
            return self._job(job_id)
        except NotFoundError:
            if job_id in self.jobs:
                raise  # submitted, not yet durable
            job = await asyncio.to_thread(find_archived, self.engram, job_id)
            if job is None:
                raise
            return job

    async def get(self, job_id: str) -> dict[str, Any]:
        return (await self._find(job_id)).view()

    async def call_of(self, job_id: str) -> dict[str, Any]:
        """What a job calls, for a retry's checks: ``function``, its JSON ``args`` and ``kwargs``, and
        whether a pickle carries the call (``pickled``)."""
        job = await self._find(job_id)
        return {"function": job.function, "args": list(job.args or []), "kwargs": dict(job.kwargs or {}),
                "pickled": bool(job.payload or job.payload_digest)}  # fmt: skip

    async def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The job once its final state is committed, or as it is after ``timeout`` seconds."""
        job = await self._find(job_id)
        if not job.committed:
            if job.settled is None:
                job.settled = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(job.settled.wait(), timeout)
        return job.view()

    async def wait_many(self, job_ids: list[str], timeout: float | None = None) -> list[dict[str, Any]]:
        for job_id in job_ids:
            await self._find(job_id)
        return list(await asyncio.gather(*(self.wait(job_id, timeout) for job_id in job_ids)))

    async def list(
        self,
        queue: str | None = None,
        status: str | None = None,
        limit: int = 100,
        labels: dict[str, str] | None = None,
        principal: str | None = None,
        after: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Jobs, newest first; ``status`` ``dead`` means failed (its attempts ran out).

        Args:
            principal: only the jobs this subject owns.
            after: a job id: only jobs submitted before it (the page after one ending with it;
                a job that left memory since is read back from the archive). ``NotFoundError``
                (``param="after"``) when there is no such job (with ``principal``: of theirs).
            queue: one of the declared queues, or one its jobs in memory were submitted to (a queue
                no longer declared); else ``ValidationError`` listing the declared ones, not an empty list.
        """
        if queue is not None and queue not in self.queues and all(j.queue != queue for j in self.jobs.values()):
            raise undeclared_queue(queue, self.queues)
        before = None
        if after is not None:
            if not isinstance(after, str) or not _JOB_ID.fullmatch(after):  # as every client gets it, HTTP or not
                raise ValidationError(f"after: {str(after)[:80]!r} is not a job id", param="after")
            cursor = self.jobs.get(after) or self._archiving.get(after)
            if cursor is None:
                cursor = await asyncio.to_thread(find_archived, self.engram, after)
            if cursor is None or (principal is not None and cursor.principal != principal):
                raise NotFoundError(f"after: no job {after!r} to list after", param="after")
            before = cursor.seq
        return select(self.jobs.values(), queue, status, limit, labels, principal, before)

    async def cancel(self, job_id: str, principal: str | None = None) -> dict[str, Any]:
        """Cancel a queued, retrying or running job (a running attempt's result is discarded).

        Returns once the cancel is durable; ``UnavailableError`` after ``journalTimeout`` (the
        cancel then stands and is written when ENGRAM is back; cancelling again waits for it).
        """
        job = await self._find(job_id)
        attempt, logs = job.attempts, None
        if job.status == "running":  # what it printed so far: its worker forgets it once abandoned
            logs = await self._live_logs(job.slot, job_id)
        if job.status == "cancelled" and not job.committed:  # a cancel not yet durable: wait for it
            job.settled = job.settled or asyncio.Event()
            commit: Any = job.settled.wait()
        else:
            if job.terminal:
                raise ConflictError(f"job {job_id} already {job.status}", param="id")
            self._journal_up()
            self._unassign(job)  # its slots are free; a running attempt's thread runs on, unheard
            reason = f"cancelled by {principal or 'a user'}"
            if job.status != "running" or job.attempts != attempt:  # it moved on while its output was read
                logs = None
            commit = self._commit(job, CancelRecord(id=job_id, reason=reason, ts=time.time(),
                                                    attempt=attempt if logs else None, logs=logs))  # fmt: skip
        try:
            await asyncio.wait_for(asyncio.shield(commit), self.settings.journal_timeout)
        except asyncio.TimeoutError:
            raise UnavailableError(
                f"job {job_id}: the cancel is recorded but not yet durable (ENGRAM unreachable?); "
                "cancel again to wait for it",
                param="engram",
            ) from None
        return job.view()

    async def logs(self, job_id: str) -> str:
        """What the job printed: every finished attempt, then the running one so far."""
        return join_logs(await self.log_parts(job_id))

    async def log_parts(self, job_id: str) -> list[tuple[int | None, str, str]]:
        """``(attempt, status, text)`` of each attempt that printed, the running one last (so far)."""
        job = await self._find(job_id)
        parts = []
        for entry in job.logs:
            text = await asyncio.to_thread(decode_text, entry["logs"], self.engram)
            parts.append((entry["attempt"], entry["status"], text))
        if job.status == "running" and job.worker:
            slot = next((w for w in self.pools.workers() if w.name == job.worker), None)
            if slot is not None:
                try:
                    live = await slot.handle.logs.remote(job_id)
                except Exception:  # noqa: BLE001 - the worker is gone; its output went with it
                    live = None
                if live:
                    parts.append((job.attempts, "running", live))
        return parts

    async def stats(self) -> dict[str, Any]:
        counts = {s: 0 for s in STATUSES}
        for job in self.jobs.values():
            counts[job.status] += 1
        return {
            "jobs": counts,
            "queues": {
                q.name: {
                    "queued": q.depth,
                    "running": q.running,
                    "maxRunning": q.max_running,
                    "waiting": {pool: n for pool, n in q.waiting.items() if n},
                    "concurrency": q.config.concurrency,
                }
                for q in self.queues.values()
            },
            "pools": self.pools.describe(),
            "workersReplaced": self.pools.replaced,
            "workersGrown": self.pools.grown,
            "workersTrimmed": self.pools.trimmed,
            "journal": {
                "segments": self.journal.segments_written, "records": self.journal.records_written,
                "checkpoints": self.journal.checkpoints_written, "failing": self.journal.failing,
            },
            "memory": {"jobs": len(self.jobs), "archiving": len(self._archiving)},
            "loaded": self.loaded,
        }  # fmt: skip

    async def workers(self) -> builtins.list[dict[str, Any]]:
        """Every worker with its actor handle (for operators and tests)."""
        return [{**slot.describe(), "handle": slot.handle} for slot in self.pools.workers()]

    async def info(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "engram": self.engram.uri,
            "active": sum(1 for j in self.jobs.values() if j.status in ACTIVE),
            "startedAt": self.started_at,
            "restarted": self.restarted,
            "pid": os.getpid(),
            "loaded": self.loaded,
        }

    async def drain(self) -> None:
        """Wait until every journal record so far is durable."""
        await self.journal.flush()


def _give_back_memory() -> None:
    """Return the heap freed by jobs that left memory to the OS (glibc keeps it otherwise)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


CortexActor = ray.remote(Cortex)
"""``Cortex`` as a Ray actor class; ``control.ensure`` sets its options (restartable, detached)."""


def _check_same_call(job: Job, sub: JobSubmission) -> None:
    """Refuse a submission that reuses ``job``'s id for another call (409 naming ``id``): an id is
    an idempotency key, and answering with the first job would tell the client its new work ran.
    What is compared is what the job keeps: its function, queue and (unless pickled, whose bytes may
    differ for the same call) its arguments."""
    differs = [name for name, kept, sent in (("function", job.function, sub.function),
                                              ("queue", job.queue, sub.queue or job.queue))
               if kept != sent]  # fmt: skip
    if sub.payload is None and sub.payload_digest is None:
        if job.args is not None or job.kwargs is not None:
            differs += [name for name, kept, sent in (("args", job.args or [], list(sub.args)),
                                                      ("kwargs", job.kwargs or {}, dict(sub.kwargs)))
                        if kept != sent]  # fmt: skip
        elif job.call_digest is not None and job.call_digest != digest_call(list(sub.args), dict(sub.kwargs)):
            differs.append("args or kwargs")  # it succeeded: only the digest of its arguments is kept
    if differs:
        raise ConflictError(f"id: {job.id!r} names a job already submitted with other {', '.join(differs)}: an id is "
                            "an idempotency key, the same id the same call; submit new work under a new id (or none)",
                            param="id")  # fmt: skip
