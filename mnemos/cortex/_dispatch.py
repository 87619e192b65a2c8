"""How CORTEX runs jobs on NEURON workers: batched dispatch, completions by long-poll, settlement.

Each dispatch round sends every worker the jobs it got as ONE ``start`` call. Each worker has
one outstanding ``completions()`` call (a long-poll that returns as soon as one of its jobs
ended, with every outcome ready by then): its ObjectRef is awaited, so nothing polls, and a
dead worker shows as a ``RayActorError`` on it — its jobs are retried, the worker replaced.
The jobs that take the slots those outcomes freed on that worker ride on its next
``completions()`` call: one Ray call per finished job instead of two. While a pool's jobs are
short, its workers also hold a few jobs beyond their threads (``Pool.limit``), so a thread that
ends one starts the next without waiting for that call; a worker gives back one that waited too
long (``Outcome.unstarted``), and it is queued again without counting an attempt.
Settlement turns outcomes into journal records, one append for all of a batch. A final record
(result, failure, cancel) is applied at once but shown to readers only once it is durable:
until then ``Job.view()`` answers the state before it (``Job.shown``).

Jobs that find every worker of their pool busy make the pool grow (``PoolSet.grow``, up to
``maxWorkers``); the queue's depth per pool is exported as ``mnemos_cortex_queue_depth`` (a queued
job cancelled leaves it at once).

A cancelled or timed-out attempt that already runs on a thread cannot be stopped: it is
*abandoned* (its outcome discarded), and its thread is not CORTEX's to use until the worker
reports that it ended, so the worker counts one thread fewer (``WorkerSlot.capacity``) meanwhile.
A worker every thread of which runs an abandoned attempt could never run a job again: it is
replaced (which stops those threads), and what waited on it is queued again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import ray

from mnemos.cortex._queue import Entry, QueueState, backoff_delay
from mnemos.cortex.job import Job, apply_record
from mnemos.cortex.records import CancelRecord, FailRecord, RequeueRecord, ResultRecord, RetryRecord, StartRecord
from mnemos.neuron.codec import Invocation, Outcome, encode_text, envelope_digest
from mnemos.neuron.pools import PoolSet, WorkerSlot
from mnemos.trace import metrics
from mnemos.trace.telemetry import inject, span

__all__ = ["Dispatcher"]

log = logging.getLogger("mnemos.cortex")
_LIVE_LOGS_WAIT = 10.0
"""Seconds to wait for a worker's live output of an attempt being abandoned (a wedged worker: none)."""
WORKER_LOST = (
    ray.exceptions.RayActorError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.LocalRayletDiedError,
)
NEVER_STARTED = "The actor never ran"
"""What Ray's ``ActorDiedError`` says of an actor that died before it started (it ran no job)."""
Settled = RetryRecord | ResultRecord | FailRecord
"""The record of a settled attempt."""


@dataclass(eq=False)
class Abandoned:
    """A cancelled or timed-out attempt a worker may still run; ``holds``: it runs on a thread of
    ``slot`` (counted out of the slot's capacity until the worker reports that it ended)."""

    slot: WorkerSlot
    holds: bool = False


class Dispatcher:
    """The dispatch half of the ``Cortex`` actor (state lives on the actor)."""

    jobs: dict[str, Job]
    queues: dict[str, QueueState]
    pools: PoolSet
    journal: Any
    lineage: Any
    engram: Any
    _wake: asyncio.Event
    _abandoned: dict[tuple[str, int], Abandoned]

    # -- sending ------------------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._dispatch_round()
            for queue in self.queues.values():
                self._export_depth(queue)
                metrics.CORTEX_RUNNING_JOBS.set(queue.running, queue=queue.name)

    @staticmethod
    def _export_depth(queue: QueueState) -> None:
        for pool, depth in queue.waiting.items():
            metrics.CORTEX_QUEUE_DEPTH.set(depth, queue=queue.name, pool=pool)

    def _enqueue(self, job: Job) -> None:
        """Put a queued job in its queue's heap, counted against the pool it goes to first."""
        self.queues[job.queue].push(job, self.pools.route(job.resources))

    def _dispatch_round(self, reading: WorkerSlot | None = None) -> list[Invocation]:
        """``_dispatch``, logging what failed (one bad job does not stop dispatching)."""
        try:
            return self._dispatch(reading)
        except Exception:  # noqa: BLE001 - keep dispatching whatever one job did
            log.exception("dispatch round failed")
            return []

    def _dispatch(self, reading: WorkerSlot | None = None) -> list[Invocation]:
        """Start every job that has a queue slot and a worker slot, highest priority first.

        Returns the attempts for ``reading`` (the worker whose completions were just read): they
        go with its next ``completions()`` call, the others in a ``start`` call per worker.
        """
        batches: dict[WorkerSlot, list[Invocation]] = {}
        wanting: dict[str, int] = {}  # pool -> jobs that found every worker of it busy
        heads = [(head[0], n, q) for n, q in enumerate(self.queues.values()) if (head := q.head()) is not None]
        for _, _, queue in sorted(heads, key=lambda h: h[:2]):
            blocked: list[Entry] = []
            while queue.depth and queue.running < queue.config.concurrency:
                entry = queue.pop(take=False)  # taken (``queue.took``) once it starts, not when put back
                job = self.jobs.get(entry[2])
                if job is None or job.status != "queued":
                    queue.release(entry[2])
                    continue
                pools = self.pools.candidates(job.resources)
                if not pools:  # admitted under other settings, and no pool of these can run it
                    queue.release(job.id)
                    rec = FailRecord(id=job.id, error="no declared pool with workers can run it", ts=time.time())
                    asyncio.get_running_loop().create_task(self._commit(job, rec))
                    continue
                slot = self.pools.acquire(pools)
                if slot is None or slot.inflight > slot.capacity:  # every thread is busy: grow a pool
                    room = next((p for p in pools if p.ready and len(p.workers) < p.config.most), None)
                    if room is not None:
                        wanting[room.name] = wanting.get(room.name, 0) + 1
                if slot is None:  # its pools are full: let jobs for other pools pass
                    blocked.append(entry)
                    if len(blocked) >= 32 or not (wanting or self.pools.has_room()):
                        break  # nothing after it could start either: the next freed slot calls again
                    continue
                queue.took(entry)
                batches.setdefault(slot, []).append(self._start(job, queue, slot))
            for entry in blocked:
                queue.push_entry(entry)
        if wanting and sum(self.pools.grow(self.pools.pools[name], n) for name, n in wanting.items()):
            self.pools.request_capacity()
            self._wake.set()  # the new workers take the waiting jobs in the next round
        held = batches.pop(reading, []) if reading is not None else []
        loop = asyncio.get_running_loop()
        for slot, invocations in batches.items():
            if slot.reader is None:
                slot.reader = loop.create_task(self._read(slot))
            ref = slot.handle.start.remote(invocations)
            loop.create_task(self._ack(slot, ref, invocations))
        return held

    def _start(self, job: Job, queue: QueueState, slot: WorkerSlot) -> Invocation:
        attempt = job.attempts + 1
        rec = StartRecord(id=job.id, attempt=attempt, worker=slot.name, pool=slot.pool, ts=time.time())
        apply_record(self.jobs, rec)
        self.journal.append(rec)
        slot.jobs[job.id] = attempt
        job.slot = slot
        queue.running += 1
        queue.max_running = max(queue.max_running, queue.running)
        if job.timeout:
            job.timer = asyncio.get_running_loop().call_later(job.timeout, self._expire, job.id, attempt)
        self.lineage.record(f"job:{job.id}", "execution", attempt=attempt, worker=slot.name, pool=slot.pool)
        invocation = job.invocation()
        if job.trace:
            with span("cortex.dispatch", carrier=job.trace, job_id=job.id, queue=job.queue, attempt=attempt):
                invocation.trace = inject()
        metrics.JOBS.inc(queue=job.queue, status="started")
        return invocation

    async def _ack(self, slot: WorkerSlot, ref: Any, invocations: list[Invocation]) -> None:
        """Await the ``start`` call: a dead worker or a call that failed fails those attempts."""
        try:
            await ref
        except WORKER_LOST as exc:
            self._worker_lost(slot, exc)
        except Exception as exc:  # noqa: BLE001 - e.g. an invocation that could not be sent
            self._not_started(slot, invocations, exc)

    def _not_started(self, slot: WorkerSlot, invocations: list[Invocation], exc: Exception) -> None:
        error = f"could not start on {slot.name}: {type(exc).__name__}: {exc}"
        self._on_outcomes(slot, [Outcome(id=i.id, attempt=i.attempt, ok=False, error=error) for i in invocations])

    # -- receiving ----------------------------------------------------------------------------
    async def _read(self, slot: WorkerSlot) -> None:
        """The long-poll of one worker's completions, for as long as the worker lives; each call
        carries the attempts that take the slots the previous one freed."""
        starting: list[Invocation] = []
        while slot.alive:
            sent, starting = starting, []
            try:
                outcomes = await slot.handle.completions.remote(sent)
            except WORKER_LOST as exc:
                self._worker_lost(slot, exc)
                return
            except Exception as exc:  # noqa: BLE001 - not expected: log, and ask again after a pause
                log.exception("completions of %s failed", slot.name)
                if sent:
                    self._not_started(slot, sent, exc)
                await asyncio.sleep(1.0)
                continue
            if outcomes:
                self._on_outcomes(slot, outcomes)
                starting = self._dispatch_round(reading=slot)

    def _on_outcomes(self, slot: WorkerSlot, outcomes: list[Outcome]) -> None:
        items = []
        pool = self.pools.pools[slot.pool]
        for outcome in outcomes:
            if (outcome.id, outcome.attempt) in self._abandoned:  # it ended at last: its thread is free again
                self._let_go(outcome.id, outcome.attempt)
                continue
            job = self.jobs.get(outcome.id)
            if job is None or slot.jobs.get(job.id) != outcome.attempt:
                continue  # a cancelled, timed-out or stale attempt: its outcome is discarded
            self._detach(job)
            if outcome.unstarted:
                slot.gave_back = True
                self._requeue_unstarted(job, outcome.attempt, f"given back unstarted by {slot.name}")
                continue
            slot.gave_back = False
            if outcome.started and outcome.finished:
                pool.observe(outcome.finished - outcome.started)
            items.append((job, outcome))
        if items:
            asyncio.get_running_loop().create_task(self._settle(items))

    def _requeue_unstarted(self, job: Job, attempt: int, reason: str) -> None:
        """Queue again a job whose attempt never started, without counting the attempt."""
        turn = self.queues[job.queue].again(job)
        rec = RequeueRecord(id=job.id, reason=reason, attempt=attempt, turn=turn, ts=time.time())
        apply_record(self.jobs, rec)
        self.journal.append(rec)
        self._enqueue(job)
        self._wake.set()

    def _unassign(self, job: Job) -> None:
        """Free a job's slots (cancelled, timed out); an attempt still waiting for a thread on its
        worker is dropped there, one that runs runs on, unheard (abandoned: see the module docstring)."""
        slot, attempt = job.slot, job.attempts
        running_here = slot is not None and slot.jobs.get(job.id) == attempt
        queue = self.queues.get(job.queue)
        if job.status == "queued" and queue is not None:  # cancelled while it waited: out of the depth at once
            queue.withdraw(job)
            self._export_depth(queue)
        self._detach(job)
        if slot is not None and slot.alive and running_here:
            self._abandoned[(job.id, attempt)] = Abandoned(slot)
            asyncio.get_running_loop().create_task(self._drop(slot, job.id, attempt))

    async def _drop(self, slot: WorkerSlot, job_id: str, attempt: int) -> None:
        """Withdraw an abandoned attempt that waits on its worker; one that runs there holds a thread."""
        try:
            withdrawn = await slot.handle.drop.remote([job_id])
        except Exception:  # noqa: BLE001 - a dead worker runs nothing anyway (_worker_lost forgets it)
            self._abandoned.pop((job_id, attempt), None)
            return
        entry = self._abandoned.get((job_id, attempt))
        if entry is None or not slot.alive:  # it ended meanwhile, or its worker is gone
            self._abandoned.pop((job_id, attempt), None)
            return
        if job_id in withdrawn:  # it never started
            self._let_go(job_id, attempt)
            return
        entry.holds = True
        slot.capacity -= 1
        if slot.capacity <= 0:
            self._replace_wedged(slot)

    def _let_go(self, job_id: str, attempt: int) -> None:
        """Forget an abandoned attempt that ended (or never started): the thread it held is free."""
        entry = self._abandoned.pop((job_id, attempt), None)
        if entry is not None and entry.holds and entry.slot.alive:
            entry.slot.capacity += 1
            self._wake.set()

    def _forget_abandoned(self, slot: WorkerSlot) -> None:
        for key in [k for k, entry in self._abandoned.items() if entry.slot is slot]:
            del self._abandoned[key]

    def _replace_wedged(self, slot: WorkerSlot) -> None:
        """Replace a worker whose every thread runs an abandoned attempt (it could run no job
        again); the jobs waiting on it for a thread never started: they are queued again."""
        waiting = [(self.jobs[job_id], attempt) for job_id, attempt in slot.jobs.items() if job_id in self.jobs]
        log.warning("worker %s: every thread runs a cancelled or timed-out attempt; replacing it", slot.name)
        for job, _ in waiting:
            self._detach(job)
        for job, attempt in waiting:
            self._requeue_unstarted(job, attempt, f"worker {slot.name} was replaced: its threads ran abandoned ones")
        self._forget_abandoned(slot)
        self.pools.replace(slot)
        self._wake.set()

    def _detach(self, job: Job) -> None:
        """Free the worker and queue slots of a job's running attempt (once)."""
        slot = job.slot
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        if slot is None or slot.jobs.get(job.id) != job.attempts:
            return
        del slot.jobs[job.id]
        job.slot = None
        self.pools.release(slot)
        self.queues[job.queue].running -= 1
        self._wake.set()

    def _expire(self, job_id: str, attempt: int) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.status != "running" or job.attempts != attempt:
            return
        worker, slot = job.worker, job.slot
        self._unassign(job)
        error = f"timed out after {job.timeout:g}s"
        outcome = Outcome(id=job_id, attempt=attempt, ok=False, error=error, worker=worker)
        asyncio.get_running_loop().create_task(self._settle_expired(job, outcome, slot))

    async def _settle_expired(self, job: Job, outcome: Outcome, slot: WorkerSlot | None) -> None:
        """Settle a timed-out attempt with what it printed so far (the output of the hang)."""
        outcome.logs = await self._live_logs(slot, job.id)
        await self._settle([(job, outcome)])

    async def _live_logs(self, slot: WorkerSlot | None, job_id: str) -> dict[str, Any] | None:
        """What an attempt being abandoned (cancelled, timed out) printed so far, as a logs envelope:
        its worker keeps it only while the attempt runs, and CORTEX does not hear the attempt end."""
        if slot is None or not slot.alive:
            return None
        try:
            text = await asyncio.wait_for(slot.handle.logs.remote(job_id), _LIVE_LOGS_WAIT)
        except Exception:  # noqa: BLE001 - the worker is gone or wedged; its output went with it
            return None
        if not text:
            return None
        return await asyncio.to_thread(encode_text, text, self.engram, self.pools.inline_limit)

    def _worker_lost(self, slot: WorkerSlot, exc: BaseException) -> None:
        """Replace a dead worker; each job it ran counts a failed attempt (and is retried).

        A worker starts its jobs in the order they were sent, so those sent after the first
        ``capacity`` may not have started: they are queued again without counting an attempt.
        So are all of them when the worker itself never started (Ray says so: a replacement placed
        on a node that died before the actor came up, found dead only once a job was sent to it).
        """
        if not slot.alive:
            return
        lost = [(self.jobs[job_id], attempt) for job_id, attempt in slot.jobs.items() if job_id in self.jobs]
        error = f"worker {slot.name} was lost ({type(exc).__name__})"
        for job, _ in lost:
            self._detach(job)
        ran = 0 if NEVER_STARTED in str(exc) else max(slot.capacity, 0)
        lost, waiting = lost[:ran], lost[ran:]
        for job, attempt in waiting:
            self._requeue_unstarted(job, attempt, f"worker {slot.name} was lost before it started")
        self._forget_abandoned(slot)
        self.pools.replace(slot)
        self._wake.set()
        items = [(job, Outcome(id=job.id, attempt=attempt, ok=False, error=error, worker=slot.name))
                 for job, attempt in lost]  # fmt: skip
        if items:
            asyncio.get_running_loop().create_task(self._settle(items))

    # -- settling -----------------------------------------------------------------------------
    async def _settle(self, items: list[tuple[Job, Outcome]]) -> None:
        """Journal what attempts came to; the final ones are committed before waiters wake."""
        records: list[Settled] = []
        final: list[Job] = []
        now = time.time()
        for job, outcome in items:
            if job.status != "running" or job.attempts != outcome.attempt:
                continue  # cancelled meanwhile
            rec = self._record_of(job, outcome, now)
            if not isinstance(rec, RetryRecord):
                job.shown = job.view()  # readers see the result once it is durable, not before
            apply_record(self.jobs, rec)
            records.append(rec)
            if isinstance(rec, RetryRecord):
                asyncio.get_running_loop().call_later((rec.retry_at or now) - now, self._requeue, job.id)
            else:
                final.append(job)
                # outcomes for the job-success SLO (the chart's PrometheusRule)
                metrics.JOBS.inc(queue=job.queue, status="succeeded" if isinstance(rec, ResultRecord) else "failed")
                if outcome.started and outcome.finished:
                    metrics.JOB_SECONDS.observe(outcome.finished - outcome.started, queue=job.queue)
        if not records:
            return
        durable = self.journal.append(*records)
        if final:
            await asyncio.shield(durable)
            for job in final:
                self._committed(job)

    def _record_of(self, job: Job, outcome: Outcome, now: float) -> Settled:
        """The record of what an attempt came to, from the worker's outcome."""
        base: dict[str, Any] = {"id": job.id, "attempt": outcome.attempt, "ts": now}
        base.update(worker=outcome.worker, logs=outcome.logs)
        if outcome.ok and outcome.result is not None:
            result = outcome.result
            digest = envelope_digest(result)
            if "digest" in result:
                self.lineage.record(f"artifact:{digest}", "artifact", parents=[f"job:{job.id}"], bytes=result["bytes"])
            self.lineage.record(
                f"job:{job.id}", "result", status="succeeded", result_digest=digest,
                result_inline="digest" not in result, result_bytes=result["bytes"],
            )  # fmt: skip
            return ResultRecord(**base, result=result, started=outcome.started, finished=outcome.finished)
        failures = job.failures + 1
        if not outcome.fatal and failures < job.max_attempts:
            delay = backoff_delay(self.queues[job.queue].config, failures)
            metrics.CORTEX_RETRIES.inc(queue=job.queue)
            return RetryRecord(**base, failures=failures, error=outcome.error, retry_at=now + delay)
        self.lineage.record(f"job:{job.id}", "result", status="failed", error=outcome.error)
        return FailRecord(**base, failures=failures, error=outcome.error, traceback=outcome.traceback)

    async def _commit(self, job: Job, rec: FailRecord | CancelRecord) -> None:
        """Apply a final record, wait until it is durable, then show it and wake the job's waiters."""
        job.shown = job.view()
        apply_record(self.jobs, rec)
        await asyncio.shield(self.journal.append(rec))
        self._committed(job)

    @staticmethod
    def _committed(job: Job) -> None:
        job.committed = True
        job.shown = None
        if job.settled is not None:
            job.settled.set()

    def _requeue(self, job_id: str) -> None:
        """Back in its queue after the backoff."""
        job = self.jobs.get(job_id)
        if job is None or job.status != "retrying":
            return
        turn = self.queues[job.queue].again(job)
        rec = RequeueRecord(id=job_id, reason="backoff elapsed", turn=turn, ts=time.time())
        apply_record(self.jobs, rec)
        self.journal.append(rec)
        self._enqueue(job)
        self._wake.set()
