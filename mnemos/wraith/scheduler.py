"""The WRAITH actor: a named, detached, restartable async Ray actor running the cron schedules.

It sleeps (``asyncio``) until the next due slot, submits each due task as a CORTEX job on the
``wraith`` queue (``mnemos.wraith.tasks:<task>``), and keeps its state in ENGRAM
(``wraith/state.json``), so that after a restart or downtime a missed run runs once. The sleep is
cut short by ``reload``/``run_now`` and capped at ``MAX_SLEEP`` so that a wall-clock jump (a host
that was suspended) is noticed.

Runs of one task never overlap (as a Kubernetes CronJob's ``concurrencyPolicy: Forbid``): a slot,
or a ``run_now``, that comes while the task's last job is still queued or running is skipped and
says so (two backups at once could each prune blobs the other's snapshot is about to name).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import ray

from mnemos._actors import NAMESPACE, WRAITH
from mnemos.cortex.job import TERMINAL
from mnemos.engram import Engram
from mnemos.errors import NotFoundError
from mnemos.trace import metrics
from mnemos.wraith.schedule import STATE, entries_from_settings, plan, read_state
from mnemos.wraith.tasks import TASKS, public_options, task_function, task_options

__all__ = ["ACTOR_NAME", "NAMESPACE", "STATE", "WraithScheduler", "ensure", "read_state", "submit_task"]

ACTOR_NAME = WRAITH
QUEUE = "wraith"
MAX_SLEEP = 900.0
log = logging.getLogger("mnemos.wraith")


def submit_task(client: Any, name: str, actor: str | None = None) -> str:
    """Submit task ``name`` as a CORTEX job on the ``wraith`` queue; returns the job id. ``actor``:
    the WRAITH actor submitting it, whose root alone the job then works on (``wraithActor``)."""
    fn = task_function(name)
    engram = client.engram
    options = task_options(client.settings, name) | ({"wraithActor": actor} if actor else {})
    job = client.jobs.submit(fn, engram.uri, public_options(engram.storage_options), options, queue=QUEUE)
    return str(getattr(job, "id", job))


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=16)
class WraithScheduler:
    """Named ``wraith`` actor in namespace ``mnemos``."""

    def __init__(self, settings: Any, engram: Engram) -> None:
        from mnemos.cortex.context import PlatformContext

        self._settings = settings
        self._engram = engram
        self._client = PlatformContext(settings, connected=True)
        self._name = ray.get_runtime_context().get_actor_name()  # its jobs name it: they run on its root only
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                wait = await self._tick(time.time())
            except Exception:  # noqa: BLE001 - keep scheduling; the next tick tries again
                log.exception("wraith: scheduling failed")
                wait = 60.0
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            self._wake.clear()

    async def _tick(self, now: float) -> float:
        """Run what is due at ``now``; returns seconds until the next due slot."""
        async with self._lock:
            entries = entries_from_settings(self._settings)
            state = await asyncio.to_thread(read_state, self._engram)
            due, state, wake_at = plan(entries, state, now)
            for name, reason in due:
                state[name].update(await self._submit(name, reason, now, state[name].get("lastJob")))
            await asyncio.to_thread(self._engram.write_json, STATE, state)
        return MAX_SLEEP if wake_at is None else min(MAX_SLEEP, max(0.0, wake_at - time.time()))

    async def _submit(self, name: str, reason: str, now: float, last_job: str | None) -> dict[str, Any]:
        status = await asyncio.to_thread(self._unfinished, last_job)
        if status is not None:
            skipped = f"skipped: its last run, job {last_job}, is still {status} (`mnemos jobs get {last_job}`)"
            log.warning("wraith: %s %s (%s)", name, skipped, reason)
            metrics.WRAITH_CRON_RUNS.inc(job=name, status="skipped")
            return {"lastSkipped": now, "skipped": skipped}
        outcome: dict[str, Any] = {"lastRun": now, "lastReason": reason, "skipped": None}
        try:
            outcome["lastJob"] = await asyncio.to_thread(submit_task, self._client, name, self._name)
            outcome["lastStatus"] = "submitted"
        except Exception as exc:  # noqa: BLE001 - recorded; the next slot tries again
            outcome["lastStatus"] = f"submit failed: {getattr(exc, 'message', exc)}"
            log.warning("wraith: %s could not be submitted: %s", name, outcome["lastStatus"])
        return outcome

    def _unfinished(self, job_id: str | None) -> str | None:
        """The status of job ``job_id`` when it has not ended (``None``: ended, unknown, or no job)."""
        if not job_id:
            return None
        try:
            status = str(self._client.jobs.get(job_id).status())
        except Exception:  # noqa: BLE001 - unknown to CORTEX (or it is down: the submit says so)
            return None
        return None if status in TERMINAL else status

    async def run_now(self, name: str) -> dict[str, Any]:
        """Submit ``name`` now (its schedule is unchanged); returns ``{task, job, status}``."""
        if name not in TASKS:
            raise NotFoundError(f"unknown WRAITH task {name!r}: valid tasks are {', '.join(TASKS)}", param="name")
        async with self._lock:
            state = await asyncio.to_thread(read_state, self._engram)
            last = state.get(name, {}).get("lastJob")
            outcome = await self._submit(name, "manual", time.time(), last)
            state.setdefault(name, {}).update(outcome)
            await asyncio.to_thread(self._engram.write_json, STATE, state)
        if outcome.get("skipped"):
            return {"task": name, "job": last, "status": outcome["skipped"]}
        return {"task": name, "job": outcome.get("lastJob"), "status": outcome["lastStatus"]}

    async def tick(self, now: float) -> float:
        """Plan and submit as if the clock read ``now`` (tests, and catching up by hand)."""
        return await self._tick(now)

    async def reload(self, settings: Any) -> None:
        """Take new settings (schedules) and plan again at once."""
        self._settings = settings
        self._client.settings = settings
        self._wake.set()

    async def state(self) -> dict[str, dict[str, Any]]:
        return await asyncio.to_thread(read_state, self._engram)

    async def ping(self) -> bool:
        return not self._task.done()

    async def root(self) -> str:
        """The URI of this platform's ENGRAM root (a task checks that its job is for it)."""
        return self._engram.uri


def ensure(settings: Any, engram: Engram) -> Any:
    """Get or create the detached ``wraith`` actor (for ``mnemos up``)."""
    handle = WraithScheduler.options(
        name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(settings, engram)
    return handle
