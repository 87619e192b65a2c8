"""``client.jobs``: submit registered Functions, Python functions or ``module:function`` references to CORTEX.

>>> client.jobs.submit("adder", a=2, b=3).result(timeout=60)  # a registered Function, by name
5
>>> job = client.jobs.submit("mnemos.cortex.testing:add", 2, 3)
>>> job.result(timeout=60)
5
>>> job = client.jobs.submit(lambda x: x * 2, 21, queue="default", priority=5)
>>> [h.result() for h in client.jobs.submit_many(abs, [(-1,), (-2,)])]
[1, 2]
"""

from __future__ import annotations

import base64
import builtins
import getpass
import time
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from mnemos._model import check_node_list, check_timeout, check_work_items, to_validation_error
from mnemos.cortex.job import MAX_LIST_LIMIT, TERMINAL, JobOptions, JobResources, JobSubmission, new_job_id
from mnemos.errors import ClientError, ConflictError, MnemosError, ServerError, UnavailableError, ValidationError
from mnemos.neuron.codec import decode_value, describe_callable, pickle_call, resolve_reference
from mnemos.trace.telemetry import current_trace_id, inject

__all__ = ["JobCancelledError", "JobFailedError", "JobHandle", "JobTimeoutError", "JobsAPI"]

_SUBMIT_CHUNK = 2000
_RESTART_WAIT = 300.0
# Calls that may be sent again when CORTEX died mid-call (submits carry client-made job ids).
_REPEATABLE = frozenset({"submit_many", "get", "wait", "wait_many", "list", "logs", "stats"})


class JobFailedError(ServerError):
    """The job ran out of attempts; the message carries its last error."""

    code = "job_failed"


class JobCancelledError(ConflictError):
    """The job was cancelled before it produced a result."""

    code = "job_cancelled"


class JobTimeoutError(ServerError, TimeoutError):
    """``result(timeout=)`` elapsed before the job finished (the job goes on)."""

    status = 504
    code = "job_wait_timeout"


def _principal() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return "local"


def _check_id(job_id: Any) -> None:
    if not isinstance(job_id, str):
        raise ValidationError(f"job_id: expected a job's id (a str), got {type(job_id).__name__} {job_id!r:.80}",
                              param="job_id")  # fmt: skip


class JobHandle:
    """A submitted job: ``status()``, ``result(timeout=)``, ``cancel()``, ``logs()``, ``info()``."""

    def __init__(self, api: JobsAPI, job_id: str) -> None:
        self._api = api
        self.id = job_id

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    def info(self) -> dict[str, Any]:
        """The job as CORTEX sees it now (status, attempts, worker, timestamps, error …)."""
        return self._api._call("get", self.id)

    def status(self) -> str:
        return str(self.info()["status"])

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The job once it is finished (committed), or as it is after ``timeout`` seconds."""
        check_timeout(timeout)
        return self._api._call("wait", self.id, timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The job's return value; raises ``JobFailedError``, ``JobCancelledError`` or ``JobTimeoutError``."""
        return self._api.value_of(self.wait(timeout), timeout)

    def cancel(self) -> dict[str, Any]:
        return self._api.cancel(self.id)

    def logs(self) -> str:
        """What the job printed to stdout and stderr (every attempt)."""
        return self._api.logs(self.id)


class JobsAPI:
    """CORTEX jobs from Python (``client.jobs``).

    Args:
        client: a ``mnemos.Client`` or a ``PlatformContext``; ``client.connect_ray()`` joins Ray on first use.
        principal: who submits (lineage ``intent``); default: the OS user.
    """

    def __init__(self, client: Any, principal: str | None = None) -> None:
        self.client = client
        self.principal = principal or _principal()
        self._cortex: Any = None
        self._functions: Any = None

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def cortex(self) -> Any:
        """The ``cortex`` actor handle (started on first use)."""
        if self._cortex is None:
            from mnemos.cortex.control import ensure

            self.client.connect_ray()
            components = getattr(self.client, "_components", {})
            self._cortex = components.get("cortex") or ensure(self.client.settings, self.client.engram)
            components["cortex"] = self._cortex
        return self._cortex

    def _call(self, method: str, *args: Any) -> Any:
        """Call CORTEX; while it restarts, calls that are safe to repeat are retried (up to 5 min)."""
        import ray

        deadline, delay = time.monotonic() + _RESTART_WAIT, 0.2
        while True:
            try:
                return ray.get(getattr(self.cortex, method).remote(*args))
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, MnemosError):  # raised on purpose by CORTEX: unwrap it
                    raise exc.cause from None
                raise
            except ray.exceptions.RayActorError as exc:
                if method not in _REPEATABLE or time.monotonic() > deadline:
                    raise UnavailableError(f"CORTEX is not available ({type(exc).__name__}): try again") from None
                self._cortex = None  # restarting: the same actor; gone for good: ensure() starts a new one
                getattr(self.client, "_components", {}).pop("cortex", None)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- submit -------------------------------------------------------------------------------
    def _submission(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        options: JobSubmission,
    ) -> JobSubmission:
        """The job as CORTEX takes it: a copy of ``options`` (``_options``) with the call, pickled here.

        Copied, not validated again: the options are, the function reference was resolved, and
        the rest is made here (a submit of thousands of jobs pays for one validation).
        """
        if isinstance(fn, str):
            resolve_reference(fn)  # a clear error here rather than on a worker
            function = fn
        elif callable(fn):
            function = describe_callable(fn)
        else:
            raise ClientError(f"fn: expected a callable or 'module:function', got {type(fn).__name__}", param="fn")
        payload = pickle_call(fn if callable(fn) else None, args, kwargs, name=function)
        # the id is made here, so that a repeated submit is the same job
        fields: dict[str, Any] = {"function": function, "id": options.id or new_job_id()}
        if current_trace_id() is not None:
            fields["trace"] = inject()
        if len(payload) > self.client.settings.cortex.inline_result_bytes:
            fields["payload_digest"] = self.client.engram.put(payload)
        else:
            fields["payload"] = base64.b64encode(payload).decode()
        return options.model_copy(update=fields)

    def _registered(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], given: dict[str, Any]) -> Any:
        """The job of a call of the registered Function ``name``, made as ``POST /v1/jobs`` makes it
        (``mnemos.cortex.http.job_spec``, as the local admin): its entrypoint with ``kwargs`` checked
        against its ``parameters``, on its queue and resources unless ``given``, named after it."""
        from mnemos.cortex.http import FunctionCatalog, JobCall, job_spec

        if self._functions is None:
            self._functions = FunctionCatalog(self.client.settings, getattr(self.client, "registry", None))
        options = {k: v for k, v in given.items() if v is not None}
        try:
            call = JobCall.model_validate({**options, "function": name, "args": list(args), "kwargs": kwargs})
        except PydanticValidationError as exc:
            raise to_validation_error(exc) from None
        job = job_spec(call, None, self._functions)
        fields: dict[str, Any] = {"id": job.id or new_job_id()}  # made here: a repeated submit is the same job
        if current_trace_id() is not None:
            fields["trace"] = inject()
        return job.model_copy(update=fields)

    def submit(
        self,
        fn: Callable[..., Any] | str,
        *args: Any,
        queue: str | None = None,
        priority: int = 0,
        resources: JobResources | dict[str, Any] | None = None,
        max_attempts: int | None = None,
        timeout: float | str | None = None,
        labels: dict[str, str] | None = None,
        name: str | None = None,
        job_id: str | None = None,
        parents: Iterable[str] = (),
        **kwargs: Any,
    ) -> JobHandle:
        """Queue ``fn(*args, **kwargs)``; returns once CORTEX's journal holds the job.

        Args:
            fn: a callable (sent with cloudpickle), ``"package.module:function"``, or the name of a
                registered ``Function`` (keyword arguments only, checked against its ``parameters``;
                its ``queue`` and ``resources`` unless given, and its name as the job's), called as
                ``POST /v1/jobs`` and ``mnemos jobs submit <name>`` call it.
            queue: a queue of ``settings.cortex.queues`` (default: ``default``, or the Function's).
            priority: higher runs first within the queue.
            resources: ``{"gpus": 1}``, ``{"cpus": 0.5}``, ``{"pool": "cpu-a"}``, ``{"selector": {...}}``.
            max_attempts: attempts before the job fails (default: the queue's).
            timeout: seconds (or ``"30s"``) one attempt may run (default: the queue's).
            labels: e.g. ``{"team": "vision"}`` (Policy quotas group by labels).
            name: a display name. job_id: an idempotency key. parents: lineage parents.
        Raises:
            AdmissionError: refused (no pool can run it, a quota); the message names the rule.
            NotFoundError: ``fn`` names no registered Function (``param="function"``).
            ValidationError: an argument does not fit the Function's ``parameters`` (naming it), or
                the queue is not declared (``param="queue"``, listing the declared ones).
        """
        check_node_list(parents)
        if isinstance(fn, str) and ":" not in fn:
            given = dict(queue=queue, priority=priority, resources=resources, max_attempts=max_attempts,
                         timeout=timeout, labels=labels, name=name, id=job_id, parents=list(parents))  # fmt: skip
            return self._submit([self._registered(fn, args, kwargs, given)])[0]
        options = self._options(queue or "default", priority, resources, max_attempts, timeout, labels, name, job_id,
                                parents)  # fmt: skip
        return self._submit([self._submission(fn, args, kwargs, options)])[0]

    def submit_many(
        self,
        fn: Callable[..., Any] | str,
        arguments: Iterable[Any],
        *,
        queue: str | None = None,
        priority: int = 0,
        resources: JobResources | dict[str, Any] | None = None,
        max_attempts: int | None = None,
        timeout: float | str | None = None,
        labels: dict[str, str] | None = None,
        name: str | None = None,
    ) -> list[JobHandle]:
        """One job per item of ``arguments`` (a tuple is spread as positional arguments), in few calls;
        for a registered Function's name each item is a dict of keyword arguments (as ``submit``)."""
        check_work_items(arguments)
        if isinstance(fn, str) and ":" not in fn:
            given = dict(queue=queue, priority=priority, resources=resources, max_attempts=max_attempts,
                         timeout=timeout, labels=labels, name=name)  # fmt: skip
            calls = [((), a) if isinstance(a, dict) else (a if isinstance(a, tuple) else (a,), {}) for a in arguments]
            return self._submit([self._registered(fn, args, kwargs, given) for args, kwargs in calls])
        options = self._options(queue or "default", priority, resources, max_attempts, timeout, labels, name, None, ())
        submissions = [self._submission(fn, a if isinstance(a, tuple) else (a,), {}, options) for a in arguments]
        return self._submit(submissions)

    @staticmethod
    def _options(
        queue: str,
        priority: int,
        resources: Any,
        max_attempts: int | None,
        timeout: float | str | None,
        labels: dict[str, str] | None,
        name: str | None,
        job_id: str | None,
        parents: Iterable[str],
    ) -> JobSubmission:
        """The validated options, as a submission each job copies (its call filled in by ``_submission``)."""
        values: dict[str, Any] = {
            "queue": queue,
            "priority": priority,
            "labels": labels or {},
            "parents": list(parents),
        }
        if resources is not None:
            values["resources"] = resources
        for key, value in (("max_attempts", max_attempts), ("timeout", timeout), ("name", name), ("id", job_id)):
            if value is not None:
                values[key] = value
        try:
            options = JobOptions.model_validate(values)
        except PydanticValidationError as exc:
            raise to_validation_error(exc) from None
        # model_construct: the options were just validated, and the call is filled in per job
        return JobSubmission.model_construct(function="", args=[], kwargs={}, trace={}, payload=None,
                                             payload_digest=None, principal=None, **dict(options))  # fmt: skip

    def _submit(self, submissions: list[JobSubmission]) -> list[JobHandle]:
        ids: list[str] = []
        for start in range(0, len(submissions), _SUBMIT_CHUNK):
            ids.extend(self._call("submit_many", submissions[start : start + _SUBMIT_CHUNK], self.principal))
        return [JobHandle(self, job_id) for job_id in ids]

    # -- queries ------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobHandle:
        """The handle of an existing job (``NotFoundError`` when unknown)."""
        _check_id(job_id)
        self._call("get", job_id)
        return JobHandle(self, job_id)

    def list(
        self,
        queue: str | None = None,
        status: str | None = None,
        limit: int = 100,
        labels: dict[str, str] | None = None,
        after: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Jobs, newest first (``status="dead"``: failed after their attempts ran out); ``after``: a
        job id, the page of older jobs after it (the last id of the page before). An undeclared
        ``queue`` is a ``ValidationError`` (as ``GET /v1/jobs?queue=``), not an empty list."""
        for param, value in (("queue", queue), ("status", status), ("after", after)):
            if value is not None and not isinstance(value, str):
                raise ValidationError(f"{param}: expected a str or None, got {type(value).__name__}", param=param)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValidationError(f"limit: expected a whole number from 1 to {MAX_LIST_LIMIT}, got {limit!r}",
                                  param="limit")  # fmt: skip
        return list(self._call("list", queue, status, limit, labels, None, after))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (as ``DELETE /v1/jobs/{id}``); returns its view."""
        _check_id(job_id)
        return dict(self._call("cancel", job_id, self.principal))

    def logs(self, job_id: str) -> str:
        """What the job printed to stdout and stderr (every attempt)."""
        _check_id(job_id)
        return str(self._call("logs", job_id))

    def retry(self, job_id: str, *, keep_owner: bool = False) -> JobHandle:
        """Submit a failed or cancelled job again; returns the new job, owned by this client's
        principal (``keep_owner``: by the old job's, as WRAITH's replay retries others' jobs)."""
        _check_id(job_id)
        return JobHandle(self, self._call("retry", job_id, None if keep_owner else self.principal))

    def wait(self, handles: Iterable[JobHandle | str], timeout: float | None = None) -> builtins.list[dict[str, Any]]:
        """Every job once finished (one call to CORTEX for all)."""
        check_timeout(timeout)
        ids = [h.id if isinstance(h, JobHandle) else h for h in handles]
        for job_id in ids:
            _check_id(job_id)
        return list(self._call("wait_many", ids, timeout))

    def results(self, handles: Iterable[JobHandle | str], timeout: float | None = None) -> builtins.list[Any]:
        """The results of many jobs, in order; the first failure raises."""
        return [self.value_of(view, timeout) for view in self.wait(handles, timeout)]

    def stats(self) -> dict[str, Any]:
        """Queues, pools and job counts."""
        return dict(self._call("stats"))

    def value_of(self, view: dict[str, Any], timeout: float | None = None) -> Any:
        """The Python result of a job view; raises when it failed, was cancelled or is unfinished."""
        status = view["status"]
        if status == "succeeded":
            return decode_value(view.get("result"), self.client.engram)
        if status == "failed":
            raise JobFailedError(
                f"job {view['id']} failed after {view['attempts']} attempt(s): {view.get('error')}", job=view["id"]
            )
        if status == "cancelled":
            raise JobCancelledError(f"job {view['id']} was cancelled", job=view["id"])
        if status not in TERMINAL:
            waited = f" after {timeout:g}s" if timeout is not None else ""
            raise JobTimeoutError(f"job {view['id']} is still {status}{waited}", job=view["id"])
        raise ServerError(f"job {view['id']} is in an unknown state {status!r}")  # pragma: no cover
