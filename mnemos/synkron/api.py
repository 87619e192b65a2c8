"""``client.pipelines``: run, follow, resume and cancel pipeline runs.

>>> run = client.pipelines.run("pipelines/text-gen-artifacts.yaml", params={"limit": 8})
>>> run.status(), run.outputs()
('succeeded', {'prompts': 'runs/…/prompts', 'results': 'runs/…/results', 'index': 'runs/…/index'})
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mnemos.errors import ConflictError, MnemosError, RateLimitError, UnavailableError
from mnemos.synkron import _access, _state
from mnemos.synkron._plan import Source, prepare
from mnemos.synkron._progress import Display, make_display

__all__ = ["PipelinesAPI", "RunHandle"]


def _get(ref: Any, timeout: float | None = None) -> Any:
    """``ray.get`` that re-raises a MNEMOS error from the actor as itself (no remote traceback)."""
    import ray
    from ray.exceptions import RayTaskError

    try:
        return ray.get(ref, timeout=timeout)
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, MnemosError):
            raise cause from None
        raise


class RunHandle:
    """One pipeline run: ``.id``, ``.status()``, ``.wait()``, ``.outputs()``, ``.cancel()``, ``.lineage()``."""

    def __init__(self, api: PipelinesAPI, run_id: str, state: dict[str, Any] | None = None) -> None:
        self._api = api
        self.id = run_id
        self._state = state

    def __repr__(self) -> str:
        state = self._state or {}
        return f"RunHandle(id={self.id!r}, status={state.get('status', '?')!r})"

    def state(self) -> dict[str, Any]:
        """The run's full state, fresh (live progress while the runner drives it), as
        ``GET /v1/runs/{id}`` shows it: its credential params as ``***`` (``_state.shown_state``)."""
        return _state.shown_state(self._fresh())

    def _fresh(self) -> dict[str, Any]:
        """The run's stored state (its credential params sealed), fresh: what the handle reads."""
        self._state = self._api._fetch(self.id)
        return self._state

    def status(self) -> str:
        """pending, running, succeeded, failed or cancelled."""
        return str(self._fresh()["status"])

    def wait(self, timeout: float | None = None, *, progress: bool | Display = False) -> dict[str, Any]:
        """Follow the run until it ends (or ``timeout`` s); returns its state.

        Args:
            timeout: give up waiting after this many seconds (the run goes on).
            progress: show progress (a live table, or a notebook table), or a ``Display``.
        """
        display = (make_display() if progress is True else progress) or None
        deadline = None if timeout is None else time.monotonic() + timeout
        service = self._api._service()
        version = -1
        state = self._fresh()
        try:
            while state["status"] not in _state.TERMINAL:
                if display:
                    display.update(state)
                remaining = 10.0 if deadline is None else min(10.0, deadline - time.monotonic())
                if remaining <= 0:
                    break
                answer = _get(service.watch.remote(self.id, version, remaining))
                if answer["active"]:
                    version = answer["version"]
                    if answer["state"] is not None:
                        state = answer["state"]
                    continue
                state = _state.load(self._api._client.engram, self.id)
                if state["status"] not in _state.TERMINAL and _get(
                    service.adopt.remote(self.id, self._api._client.settings)
                ):
                    version = -1
                    continue
                if state["status"] not in _state.TERMINAL:
                    raise UnavailableError(
                        f"run {self.id!r} is {state['status']} but no runner drives it: "
                        f"resume it (`mnemos resume {self.id}`)",
                        param="run_id",
                    )
        finally:
            if display:
                display.close(state)
        self._state = state
        return _state.shown_state(state)

    def outputs(self) -> dict[str, str]:
        """``{output name: ENGRAM ref}`` of a succeeded run."""
        state = self._state if self._state and self._state["status"] == "succeeded" else self._fresh()
        if state["status"] != "succeeded":
            raise ConflictError(f"run {self.id!r} is {state['status']}: it has no outputs yet", param="run_id")
        return dict(state["outputs"])

    def read(self, output: str) -> bytes:
        """The bytes of one output, once the step that writes it completed, whatever the run's
        status (a failed run's completed outputs too), as the gateway's
        ``GET /v1/runs/{id}/outputs/{output}`` answers: ``NotFoundError`` for an output the run
        does not have, ``ConflictError`` while its step has not completed."""
        engram = self._api._client.engram
        state = self._state if self._state and self._state["status"] in _state.TERMINAL else self._fresh()
        return engram.get(_access.run_output(engram, None, state, output))

    def cancel(self) -> dict[str, Any]:
        return self._api.cancel(self.id)

    def lineage(self) -> dict[str, Any]:
        """The run's lineage graph (see ``client.lineage``)."""
        return self._api._client.lineage(f"run:{self.id}")


class PipelinesAPI:
    """``client.pipelines``: SYNKRON runs of ``synkron.mnemos.dev/v1`` Pipelines."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def _service(self) -> Any:
        if not self._client.connected:
            raise UnavailableError("pipelines run on the platform: connect first (client = mnemos.connect())")
        from mnemos.synkron.service import ensure

        return ensure(self._client.settings)

    def _check_active(self, service: Any, principal: Any) -> None:
        """Refuse an authenticated caller one more run past ``synkron.maxActiveRuns`` of its own going
        (each run is a thread of the runner, shared by every caller): a 429 naming the setting."""
        settings = self._client.settings
        if settings is None:
            from mnemos.config import load_settings

            settings = load_settings()
        most = settings.synkron.max_active_runs
        if not most or not _access.enforced(principal):
            return
        if _get(service.active_of.remote(principal.subject)) >= most:
            raise RateLimitError(f"{most} runs of this caller are going (synkron.maxActiveRuns): wait for one to "
                                 "end, or cancel one (mnemos runs cancel RUN)", param="synkron.maxActiveRuns",
                                 retry_after=5)  # fmt: skip

    def _fetch(self, run_id: str) -> dict[str, Any]:
        if self._client.connected:
            answer = _get(self._service().watch.remote(run_id, -1, 0))
            if answer["active"] and answer["state"] is not None:
                return dict(answer["state"])
        return _state.load(self._client.engram, run_id)

    def run(
        self,
        source: Source,
        params: dict[str, Any] | None = None,
        *,
        progress: bool | Display = True,
        wait: bool = True,
        cache: bool = True,
        principal: Any = None,
        timeout: float | None = None,
    ) -> RunHandle:
        """Start a run of a pipeline file, document, ``Pipeline`` or registered pipeline name.

        Args:
            params: values for ``spec.params`` (``${name}`` in steps).
            progress: show progress while waiting.
            wait: follow the run until it ends (else return at once).
            cache: reuse the outputs of steps whose inputs are unchanged.
            principal: who asks, a ``Principal`` or a subject (recorded in lineage; its limits and
                budgets apply to the run's model steps); default ``local:<user>``.
        """
        service = self._service()
        if isinstance(source, Path):
            source = str(source)
        self._check_active(service, principal)
        state = prepare(self._client, source, params, principal=principal, cache=cache)
        if any(step["type"] in ("infer", "index") for step in state["steps"].values()):
            self._client.serve_models()  # RELAY deploys the registered Models the steps call
        state = _get(service.start.remote(state["id"], self._client.settings))
        handle = RunHandle(self, state["id"], state)
        if wait:
            handle.wait(timeout, progress=progress)
        return handle

    def resume(self, run_id: str, *, progress: bool | Display = True, wait: bool = True,
               principal: Any = None, timeout: float | None = None) -> RunHandle:  # fmt: skip
        """Resume a failed or cancelled run: completed steps are kept, the rest run again.

        ``principal``: who asks, a ``Principal`` or a subject (recorded in lineage). An authenticated
        ``Principal`` resumes only a run of its own (another's is 404; a viewer's is 403), unless
        an operator or admin; the checks of a run's start (the run outputs its parameters name, the
        spaces it writes, see ``mnemos.synkron._access``) run again for it.
        """
        from mnemos.synkron._plan import check_resume

        if _access.enforced(principal):
            current = self._fetch(run_id)
            _access.check_resumer(principal, current)
            check_resume(self._client, current, principal)
        subject = principal if principal is None or isinstance(principal, str) else principal.subject
        self._check_active(self._service(), principal)
        state = _get(self._service().resume.remote(run_id, self._client.settings, subject))
        handle = RunHandle(self, run_id, state)
        if wait:
            handle.wait(timeout, progress=progress)
        return handle

    def adopt(self, run_id: str) -> RunHandle | None:
        """Drive again a run that did not end and that no runner drives (the embedded cluster of an
        interrupted ``mnemos run`` stopped with it): its handle, or ``None`` when it is no such run.
        Completed steps keep their outputs; a step's job that CORTEX still holds is waited for."""
        if not _get(self._service().adopt.remote(run_id, self._client.settings)):
            return None
        return self.get(run_id)

    def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel a running run; returns its state (as ``RunHandle.state`` shows it)."""
        return _state.shown_state(dict(_get(self._service().cancel.remote(run_id, self._client.settings))))

    def get(self, run_id: str) -> RunHandle:
        """A handle on an existing run (``NotFoundError`` when there is none)."""
        return RunHandle(self, run_id, self._fetch(run_id))

    def list(self, pipeline: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent runs, newest first (short form)."""
        return [_state.summary(s) for s in _state.list_runs(self._client.engram, pipeline, limit)]
