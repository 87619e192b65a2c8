"""The SYNKRON runner: the named detached actor ``synkron`` that drives pipeline runs.

Callers prepare a run where they are (``_plan.prepare``) and hand its id here; the actor runs
it in a thread (``RunExecutor``), takes progress reports from the steps, and answers
``watch(run_id, version)`` long-polls so that progress bars follow without polling ENGRAM.
A run survives the caller going away. When the actor restarts, runs it was driving (marked
under ``synkron/active/``) are resumed: completed steps keep their outputs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import ray

from mnemos._actors import NAMESPACE, SYNKRON
from mnemos.config import Settings
from mnemos.cortex.context import PlatformContext
from mnemos.engram import Engram
from mnemos.errors import ConflictError, IntegrityError, NotFoundError
from mnemos.synkron import _state
from mnemos.synkron.runner import RunExecutor, cancel_unfinished_jobs
from mnemos.trace.lineage import record

__all__ = ["ACTOR_NAME", "SynkronService", "ensure", "get_service"]

ACTOR_NAME = SYNKRON
ACTIVE_PREFIX = "synkron/active"
logger = logging.getLogger("mnemos.synkron")


class _Active:
    def __init__(self, executor: RunExecutor) -> None:
        self.executor = executor
        self.version = 0
        self.thread: threading.Thread | None = None


# Calls in flight when the actor dies are retried on its next incarnation (they are idempotent:
# ``start`` of a started run and ``watch`` return the state, ``progress`` overwrites).
@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=64)  # type: ignore[call-overload]
class SynkronService:
    """Named ``synkron`` actor in namespace ``mnemos``.

    Args:
        settings: MNEMOS settings; its ENGRAM root is scanned for interrupted runs on start.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[str, PlatformContext] = {}
        self._runs: dict[str, _Active] = {}
        self._cond = threading.Condition()
        self._launching = threading.Lock()  # one load → reset → launch at a time
        threading.Thread(target=self._recover, name="synkron-recover", daemon=True).start()

    # -- runs ------------------------------------------------------------------------------------
    def start(self, run_id: str, settings: Settings | None = None) -> dict[str, Any]:
        """Start a prepared run (idempotent: a run already started is left alone)."""
        client = self._context(settings)
        with self._cond:
            if run_id in self._runs:
                return _snapshot(self._runs[run_id])
        with self._launching:  # a cancel of the prepared run (cancel takes it too) lands before or after
            state = _state.load(client.engram, run_id)
            if state["status"] in _state.TERMINAL:
                return state
            return self._launch(client, state)

    def resume(self, run_id: str, settings: Settings | None = None, principal: str | None = None) -> dict[str, Any]:
        """Run again the steps of a failed or cancelled run that did not complete."""
        client = self._context(settings)
        with self._launching:
            active = self._finishing(run_id)
            if active is not None:
                raise ConflictError(f"run {run_id!r} is still running: wait for it or cancel it", param="run_id")
            state = _state.load(client.engram, run_id)
            if state["status"] == "succeeded":
                raise ConflictError(f"run {run_id!r} succeeded: there is nothing to resume", param="run_id")
            _reset_for_resume(state)  # another master key: refused (seal_stored) before the run changes
            record(client.engram, f"run:{run_id}", "intent", action="resume", resumes=state["resumes"],
                   principal=principal or _state.principal_default(), status="pending")  # fmt: skip
            _state.save(client.engram, state)
            return self._launch(client, state)

    def adopt(self, run_id: str, settings: Settings | None = None) -> bool:
        """Drive again a run that a previous incarnation of this actor was driving (its marker is
        still in ENGRAM); ``True`` when the run is driven now. Waiting callers ask for this."""
        return self._adopt(self._context(settings), run_id)

    def cancel(self, run_id: str, settings: Settings | None = None) -> dict[str, Any]:
        """Cancel a running run (its running jobs are cancelled); a finished run is a conflict. A run
        that no runner drives although it did not end (the cluster of the `mnemos run` that drove it
        stopped) is cancelled where it stands: its steps' unfinished jobs too, so that no CORTEX
        restart runs them again."""
        active = self._finishing(run_id)
        if active is None:
            client = self._context(settings)
            with self._launching:  # not adopted meanwhile (by _recover, or a waiting caller)
                active = self._finishing(run_id)
                if active is None:
                    state = _state.load(client.engram, run_id)
                    if state["status"] in _state.TERMINAL:
                        raise ConflictError(f"run {run_id!r} is not running (status {state['status']})",
                                            param="run_id")  # fmt: skip
                    return _cancel_undriven(client, state, f"{ACTIVE_PREFIX}/{run_id}")
        active.executor.cancel()
        return _snapshot(active)

    def _finishing(self, run_id: str) -> _Active | None:
        """The run's driver while it runs; ``None`` once it ended (waiting out the last moments of
        a driver whose run is already terminal)."""
        with self._cond:
            active = self._runs.get(run_id)
        if active is None or active.thread is None:
            return active
        with active.executor.lock:
            terminal = active.executor.state["status"] in _state.TERMINAL
        if terminal:
            active.thread.join(timeout=60)
            return None
        return active

    def progress(self, run_id: str, step: str, done: int, total: int, rate: float) -> None:
        """A step's progress report (items done of total, items/s)."""
        with self._cond:
            active = self._runs.get(run_id)
        if active is not None:
            active.executor.progress(step, done, total, rate)

    def watch(self, run_id: str, version: int, timeout: float = 10.0) -> dict[str, Any]:
        """The run's state once its version differs from ``version`` (or after ``timeout`` s).

        Returns ``{"active": False}`` when this actor is not driving the run (read ENGRAM then).
        """
        deadline = time.monotonic() + min(timeout, 60.0)
        with self._cond:
            while True:
                active = self._runs.get(run_id)
                if active is None:
                    return {"active": False, "version": version, "state": None}
                if active.version != version:
                    return {"active": True, "version": active.version, "state": _snapshot(active)}
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return {"active": True, "version": active.version, "state": None}
                self._cond.wait(remaining)

    def active(self) -> list[str]:
        with self._cond:
            return sorted(self._runs)

    def active_of(self, principal: str) -> int:
        """How many of the runs this runner drives ``principal`` started (``synkron.maxActiveRuns``)."""
        with self._cond:
            return sum(1 for a in self._runs.values() if a.executor.state.get("principal") == principal)

    # -- internals -------------------------------------------------------------------------------
    def _context(self, settings: Settings | None) -> PlatformContext:
        """The run context for these settings (one per distinct settings, kept)."""
        settings = settings or self._settings
        key = settings.model_dump_json()
        if key not in self._clients:
            self._clients[key] = PlatformContext(settings, connected=True)
        return self._clients[key]

    def _launch(self, client: Any, state: dict[str, Any]) -> dict[str, Any]:
        run_id = state["id"]
        active: _Active

        def changed() -> None:
            with self._cond:
                active.version += 1
                self._cond.notify_all()

        active = _Active(RunExecutor(client, state, on_change=changed, service=ACTOR_NAME))
        with self._cond:
            if run_id in self._runs:
                return _snapshot(self._runs[run_id])
            self._runs[run_id] = active
        marker = f"{ACTIVE_PREFIX}/{run_id}"
        client.engram.write_json(marker, {"run": run_id, "started": time.time()})

        def drive() -> None:
            try:
                active.executor.run()
            except Exception:  # noqa: BLE001 - the run's state says what failed
                logger.exception("synkron: run %s stopped unexpectedly", run_id)
            finally:
                client.engram.delete(marker)
                with self._cond:
                    self._runs.pop(run_id, None)
                    active.version += 1
                    self._cond.notify_all()

        active.thread = threading.Thread(target=drive, name=f"synkron-run-{run_id}", daemon=True)
        active.thread.start()
        return _snapshot(active)

    def _adopt(self, client: Any, run_id: str) -> bool:
        marker = f"{ACTIVE_PREFIX}/{run_id}"
        with self._launching:
            with self._cond:
                if run_id in self._runs:
                    return True
            if not client.engram.exists(marker):
                return False
            try:
                state = _state.load(client.engram, run_id)
            except NotFoundError:
                client.engram.delete(marker)
                return False
            if state["status"] in _state.TERMINAL:
                client.engram.delete(marker)
                return False
            logger.warning("synkron: resuming run %s, interrupted by a restart of the runner", run_id)
            _reset_for_resume(state)
            _state.save(client.engram, state)
            self._launch(client, state)
            return True

    def _recover(self) -> None:
        """Resume the runs a previous incarnation of this actor was driving (in its own ENGRAM;
        runs in other roots are adopted when a caller waits for them)."""
        try:
            client = self._context(None)
            for key in client.engram.list(ACTIVE_PREFIX):
                self._adopt(client, key.rsplit("/", 1)[-1])
        except Exception:  # noqa: BLE001 - recovery is best effort; `mnemos resume` remains
            logger.exception("synkron: recovering interrupted runs failed")


def _reset_for_resume(state: dict[str, Any]) -> None:
    """Keep completed steps; every other step goes back to pending. Credentials the run kept in clear
    (stored before they were sealed) are sealed (``_state.seal_stored``): the state is saved next."""
    _state.seal_stored(state)
    for st in state["steps"].values():
        if st["status"] not in _state.DONE:
            st.update(status="pending", error=None, started=None, finished=None,
                      progress={"done": 0, "total": None, "rate": None})  # fmt: skip
    state.update(status="pending", error=None, finished=None, resumes=int(state.get("resumes") or 0) + 1)


def _cancel_undriven(client: Any, state: dict[str, Any], marker: str) -> dict[str, Any]:
    """Cancel a run that did not end and that no runner drives: the unfinished jobs of its steps
    (CORTEX re-queues a running one when it restarts), its steps that did not complete, the run."""
    cancel_unfinished_jobs(client, state)
    with contextlib.suppress(IntegrityError):  # (another master key: cancelled all the same)
        _state.seal_stored(state)  # a run stored before credentials were sealed: written sealed
    for st in state["steps"].values():
        if st["status"] not in _state.DONE:
            st.update(status="cancelled", error="cancelled", finished=st.get("finished") or time.time())
    state.update(status="cancelled", error=None, finished=time.time())
    record(client.engram, f"run:{state['id']}", "result", status="cancelled", error=None,
           outputs=dict(state["outputs"]))  # fmt: skip
    _state.save(client.engram, state)
    client.engram.delete(marker)
    return state


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(state)


def _snapshot(active: _Active) -> dict[str, Any]:
    with active.executor.lock:
        return _copy(active.executor.state)


def ensure(settings: Settings, engram: Engram | None = None) -> Any:
    """Get or create the detached ``synkron`` actor (the CRADLE hook)."""
    del engram  # runs name their ENGRAM through the settings each call carries
    actor: Any = SynkronService
    return actor.options(name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote(settings)


def get_service() -> Any:
    """The running ``synkron`` actor (``ValueError`` when there is none)."""
    return ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
