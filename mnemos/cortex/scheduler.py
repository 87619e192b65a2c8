"""CORTEX: one named, restartable async Ray actor that admits, queues, dispatches and commits jobs.

Named ``cortex`` in namespace ``mnemos``, detached, ``max_restarts=-1``. On (re)start it rebuilds
every job from the journal, re-queues what was queued, running or waiting for a retry, and
never runs again a job whose result is committed. Dispatch is event driven: a job is sent to a
NEURON worker as an actor call whose ObjectRef CORTEX awaits — no polling anywhere.

Guarantees: a submit returns once its journal record is durable (nothing acknowledged is
lost); a job's result or failure is committed by exactly one journal record; a job may run
more than once (its worker died, CORTEX restarted mid-run), never committed twice.
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

from mnemos.config import CortexSettings, NeuronSettings
from mnemos.cortex._dispatch import Dispatcher
from mnemos.cortex._queue import QueueState
from mnemos.cortex.admission import PolicyCache, check_quotas, check_resources, usage_of
from mnemos.cortex.codec import decode_text
from mnemos.cortex.job import ACTIVE, STATUSES, Job, apply_record, join_logs, new_job_id, select
from mnemos.cortex.journal import JobJournal, rebuild
from mnemos.engram import Engram
from mnemos.errors import ConflictError, NotFoundError
from mnemos.neuron.pools import PoolSet
from mnemos.trace.lineage import LineageWriter

__all__ = ["ACTOR_NAME", "NAMESPACE", "Cortex", "CortexActor"]

ACTOR_NAME = "cortex"
NAMESPACE = "mnemos"
log = logging.getLogger(__name__)


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
        self.journal = JobJournal(engram, cortex.journal_batch_ms, self.lineage)
        self.jobs: dict[str, Job] = rebuild(self.journal.read())
        self._seq = self._replayed_seq = max((job.seq for job in self.jobs.values()), default=0)
        self.queues = {name: QueueState(name, cfg) for name, cfg in cortex.queues.items()}
        self.pools = PoolSet(neuron.pools, engram, cortex.inline_result_bytes, cortex.affinity.gpu_preferred)
        self.pools.start()
        self.started_at = time.time()
        self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self.policies = PolicyCache(engram)
        self._wake = asyncio.Event()
        loop = asyncio.get_event_loop()
        self._background = [loop.create_task(self._dispatch_loop()), loop.create_task(self._resume())]

    # -- submit -------------------------------------------------------------------------------
    async def submit_many(self, specs: list[dict[str, Any]], principal: str | None = None) -> list[str]:
        """Admit and queue jobs (all or none); returns their ids once the journal holds them."""
        policies = await self.policies.get()
        usage = usage_of(policies, (j for j in self.jobs.values() if j.status in ACTIVE)) if policies else {}
        new: list[Job] = []
        ids: list[str] = []
        try:
            for spec in specs:
                given = spec.get("id")
                if given and given in self.jobs:  # idempotent: the same id is the same job
                    ids.append(given)
                    continue
                job = self._new_job(spec, principal)
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
            for job in new:
                self.lineage.record(
                    f"job:{job.id}", "intent", parents=job.parents, principal=job.principal,
                    function=job.function, queue=job.queue, priority=job.priority, labels=job.labels,
                )  # fmt: skip
            await asyncio.shield(self.journal.append(*(job.submit_record() for job in new)))
            for job in new:
                if job.status == "queued":
                    self.queues[job.queue].push(job)
            self._wake.set()
        return ids

    def _new_job(self, spec: dict[str, Any], principal: str | None) -> Job:
        queue = self.queues.get(spec.get("queue") or "default")
        if queue is None:
            raise NotFoundError(
                f"queue {spec.get('queue')!r} is not declared; declared queues: {', '.join(sorted(self.queues))}",
                param="queue",
            )
        self._seq += 1
        return Job(
            id=spec.get("id") or new_job_id(),
            queue=queue.name,
            function=spec["function"],
            priority=int(spec.get("priority") or 0),
            seq=self._seq,
            payload=spec.get("payload"),
            payload_digest=spec.get("payloadDigest"),
            args=spec.get("args"),
            kwargs=spec.get("kwargs"),
            resources=dict(spec.get("resources") or {}),
            max_attempts=int(spec.get("maxAttempts") or queue.config.max_attempts),
            timeout=spec.get("timeout") or queue.config.timeout,
            labels=dict(spec.get("labels") or {}),
            name=spec.get("name"),
            principal=principal or spec.get("principal"),
            parents=list(spec.get("parents") or []),
            trace=dict(spec.get("trace") or {}),
            submitted_at=time.time(),
        )

    async def retry(self, job_id: str, principal: str | None = None) -> str:
        """Submit a failed or cancelled job again as a new job; returns the new id."""
        old = self._job(job_id)
        if old.status not in ("failed", "cancelled"):
            raise ConflictError(
                f"job {job_id} is {old.status}: only failed or cancelled jobs can be retried", param="id"
            )
        spec = old.submit_record()
        spec.update(id=None, parents=[f"job:{old.id}"], principal=principal or old.principal)
        return (await self.submit_many([spec], principal))[0]

    # -- dispatch -----------------------------------------------------------------------------
    async def _resume(self) -> None:
        """Queue again every job the journal left unfinished (after a restart)."""
        now = time.time()
        loop = asyncio.get_running_loop()
        records: list[dict[str, Any]] = []
        failed: list[Job] = []
        for job in sorted(self.jobs.values(), key=lambda j: j.seq):
            if job.terminal or job.seq > self._replayed_seq:
                continue
            queue = self.queues.get(job.queue)
            if queue is None:
                records.append(
                    {"t": "fail", "id": job.id, "error": f"queue {job.queue!r} is no longer declared", "ts": now}
                )
                apply_record(self.jobs, records[-1])
                failed.append(job)
                continue
            if job.status == "retrying" and job.retry_at and job.retry_at > now:
                loop.call_later(job.retry_at - now, self._requeue, job.id)
                continue
            if job.status != "queued":
                records.append({"t": "requeue", "id": job.id, "reason": "cortex restarted", "ts": now})
                apply_record(self.jobs, records[-1])
            queue.push(job)
        self._wake.set()
        if records:
            await asyncio.shield(self.journal.append(*records))
        for job in failed:
            job.committed = True

    # -- queries and control ------------------------------------------------------------------
    def _job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"job {job_id!r} not found", param="id")
        return job

    async def get(self, job_id: str) -> dict[str, Any]:
        return self._job(job_id).view()

    async def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The job once its final state is committed, or as it is after ``timeout`` seconds."""
        job = self._job(job_id)
        if not job.committed:
            if job.settled is None:
                job.settled = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(job.settled.wait(), timeout)
        return job.view()

    async def wait_many(self, job_ids: list[str], timeout: float | None = None) -> list[dict[str, Any]]:
        for job_id in job_ids:
            self._job(job_id)
        return list(await asyncio.gather(*(self.wait(job_id, timeout) for job_id in job_ids)))

    async def list(
        self,
        queue: str | None = None,
        status: str | None = None,
        limit: int = 100,
        labels: dict[str, str] | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Jobs, newest first; ``status`` ``dead`` means failed (its attempts ran out)."""
        return select(self.jobs.values(), queue, status, limit, labels)

    async def cancel(self, job_id: str, principal: str | None = None) -> dict[str, Any]:
        """Cancel a queued, retrying or running job (a running attempt's result is discarded)."""
        job = self._job(job_id)
        if job.terminal:
            raise ConflictError(f"job {job_id} already {job.status}", param="id")
        self._detach(job)  # a running attempt gives its slots back; its thread runs on, unheard
        reason = f"cancelled by {principal or 'a user'}"
        await self._commit(job, {"t": "cancel", "id": job_id, "reason": reason, "ts": time.time()})
        return job.view()

    async def logs(self, job_id: str) -> str:
        """What the job printed: every finished attempt, then the running one so far."""
        job = self._job(job_id)
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
        return join_logs(parts)

    async def stats(self) -> dict[str, Any]:
        counts = {s: 0 for s in STATUSES}
        for job in self.jobs.values():
            counts[job.status] += 1
        return {
            "jobs": counts,
            "queues": {
                q.name: {
                    "queued": sum(1 for _, _, i in q.heap if self.jobs[i].status == "queued"),
                    "running": q.running,
                    "maxRunning": q.max_running,
                    "concurrency": q.config.concurrency,
                }
                for q in self.queues.values()
            },
            "pools": self.pools.describe(),
            "workersReplaced": self.pools.replaced,
            "journal": {"segments": self.journal.segments_written, "records": self.journal.records_written},
        }

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
        }

    async def drain(self) -> None:
        """Wait until every journal record so far is durable."""
        await self.journal.flush()


CortexActor = ray.remote(Cortex)
"""``Cortex`` as a Ray actor class; ``control.ensure`` sets its options (restartable, detached)."""
