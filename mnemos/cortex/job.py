"""A CORTEX job: the request a client sends, the state CORTEX keeps, and the journal records.

State changes are journal records; ``apply_record`` is the one place that turns a record into
state, used both live and when the journal is replayed after a restart, so the two cannot
drift apart::

    submit  -> queued                       (acknowledged once durable)
    start   -> running   (attempt n)
    retry   -> retrying  (backoff, then queued again)
    requeue -> queued    (CORTEX restarted while it was running)
    result  -> succeeded (committed once; a job with a result is never run again)
    fail    -> failed    (attempts exhausted, or the function cannot be found)
    cancel  -> cancelled
    withdraw -> (forgotten)                 a submit whose write outlived the journal timeout (503)

A job crosses the Ray hop to the ``cortex`` actor as a ``JobSubmission`` (a ``JobRequest`` plus
what the client path adds: the pickled call, the submitter, the trace context), validated where
it was made; the records are the typed models of ``mnemos.cortex.records``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from mnemos._model import CoreModel, Duration, format_duration
from mnemos.cortex.records import (
    CancelRecord,
    FailRecord,
    JournalRecord,
    RequeueRecord,
    ResultRecord,
    RetryRecord,
    StartRecord,
    SubmitRecord,
    WithdrawRecord,
)
from mnemos.errors import ValidationError
from mnemos.genome import check_label_key
from mnemos.neuron.codec import Envelope, Invocation, validate_reference

__all__ = [
    "ACTIVE",
    "MAX_ATTEMPTS",
    "MAX_JOB_TIMEOUT_S",
    "MAX_LIST_LIMIT",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "RESERVED_LABEL_PREFIX",
    "RUN_LABEL",
    "STEP_JOB_ID",
    "STATUSES",
    "TEAM_LABEL",
    "TERMINAL",
    "Job",
    "JobOptions",
    "JobRequest",
    "JobResources",
    "JobSubmission",
    "apply_record",
    "check_submitted_label",
    "digest_call",
    "join_logs",
    "new_job_id",
    "select",
    "shown_id",
]

MAX_LIST_LIMIT = 10_000
"""The most jobs one ``list`` call returns (a page)."""
STATUSES = ("queued", "running", "retrying", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE = frozenset({"queued", "running", "retrying"})
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RUN_LABEL = "synkron.mnemos.dev/run"
"""The label SYNKRON puts on each step job: the run it belongs to (``…/step``: the step)."""
STEP_JOB_ID = re.compile(r"^(?:.+\.[^.]+\.[0-9]+|[0-9a-f]{40})$")
"""The ids SYNKRON gives its step jobs (``mnemos.synkron._jobs.job_key``: ``<run>.<step>.<n>``, or 40 hex
digits of a long one's hash), which a client over HTTP may not choose: a developer who took one before a
run reached that step would have had their job stand in for the step."""
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
"""A job's priority lies in this range (higher runs first within the queue)."""
MAX_ATTEMPTS = 20
"""The most attempts a job may ask for (a queue's own ``maxAttempts`` default is the operator's)."""
RESERVED_LABEL_PREFIX = "mnemos.dev/"
"""Labels under this prefix are set by MNEMOS from the authenticated caller, never by a submitter."""
TEAM_LABEL = RESERVED_LABEL_PREFIX + "team"
"""The team of the credential that submitted the job (set by the gateway; Policy quotas ``per: team``)."""
MAX_JOB_TIMEOUT_S = 30 * 86400.0
"""The longest ``timeout`` one attempt of a job may ask for (30 days)."""
RESERVED_LABEL_PATTERN = r"^([-a-z0-9.]*\.)?mnemos\.dev/"
"""Label keys MNEMOS sets itself (``mnemos.dev/team``, SYNKRON's ``synkron.mnemos.dev/run`` …): a prefix
that is ``mnemos.dev`` or ends in ``.mnemos.dev``; a submitter over HTTP may not set them."""
MAX_LABEL_VALUE = 63
"""The longest label value a submitter may set (as Kubernetes)."""
MAX_SUBMITTED_LABELS = 64
"""The most labels a submitter may set on one job (each is kept with the job and journaled)."""
MAX_SELECTOR = 64
"""The most labels a job's ``resources.selector`` may name."""
_RESERVED_LABEL = re.compile(RESERVED_LABEL_PATTERN)


def check_submitted_label(key: str, value: str) -> None:
    """Raise unless a submitter may set the label ``key: value`` (names ``labels.<key>``).

    Raises:
        ValidationError: not a Kubernetes label key (prefix at most 253 characters), a prefix MNEMOS
            reserves, or a value longer than ``MAX_LABEL_VALUE``.
    """
    param = f"labels.{key[:100]}"
    if not check_label_key(key):
        raise ValidationError(
            f"{param}: not a label key: use an optional DNS-subdomain prefix and '/', then a name of 1-63 letters, "
            "digits, '-', '_' or '.' starting and ending with a letter or digit (e.g. team, example.com/stage)",
            param=param,
        )
    if _RESERVED_LABEL.match(key):
        raise ValidationError(
            f"{param}: labels under mnemos.dev/ and *.mnemos.dev/ are set by MNEMOS (from the caller's identity, "
            "or by SYNKRON for its steps), never by a submitter",
            param=param,
        )
    if len(value) > MAX_LABEL_VALUE:
        raise ValidationError(f"{param}: a label value is at most {MAX_LABEL_VALUE} characters", param=param)
    if not value.isprintable():
        raise ValidationError(f"{param}: a label value may not hold control characters (newlines, tabs, \\x00 …)",
                              param=param)  # fmt: skip


def shown_id(job_id: str) -> str:
    """``job_id`` as an error message echoes it: quoted, cut to 80 characters with an ellipsis (an id
    in a path or a call can be any length)."""
    return f"{job_id[:80]!r}{'…' if len(job_id) > 80 else ''}"


def new_job_id() -> str:
    return uuid.uuid4().hex[:20]


class JobResources(CoreModel):
    """What a job needs from the pool that runs it."""

    cpus: float = Field(0.0, ge=0, description="CPUs a pool's worker must have.")
    gpus: float = Field(0.0, ge=0, description="GPUs a pool's worker must have; 0: any pool (GPU pools first).")
    pool: str | None = Field(None, description="Run only on this pool.")
    selector: dict[str, str] = Field(
        default_factory=dict, max_length=MAX_SELECTOR, description="Labels the pool's selector must carry.")


class JobOptions(CoreModel):
    """How a job is run: everything of a request but the call itself."""

    queue: str = Field("default", description="A queue declared in settings.cortex.queues.")
    priority: int = Field(
        0,
        description=f"Higher runs first within the queue ({PRIORITY_MIN}..{PRIORITY_MAX}).",
        json_schema_extra={"minimum": PRIORITY_MIN, "maximum": PRIORITY_MAX},
    )
    resources: JobResources = Field(default_factory=JobResources)
    max_attempts: int | None = Field(
        None,
        description=f"Attempts before the job fails (1..{MAX_ATTEMPTS}); default: the queue's.",
        json_schema_extra={"minimum": 1, "maximum": MAX_ATTEMPTS},
    )
    timeout: Duration | None = Field(None, gt=0, description="Seconds one attempt may run; default: the queue's.")
    labels: dict[str, str] = Field(default_factory=dict, description="e.g. team; Policy quotas group by them.")
    name: str | None = Field(None, min_length=1, max_length=200, description="A display name (default: the function).")
    id: str | None = Field(None, description="Idempotency key: submitting an existing id returns that job.")
    parents: list[str] = Field(default_factory=list, description="Lineage parents (run:…, step:…, artifact:…).")

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: int) -> int:
        if not PRIORITY_MIN <= value <= PRIORITY_MAX:
            raise ValueError(f"must be between {PRIORITY_MIN} and {PRIORITY_MAX} (higher runs first), not {value}")
        return value

    @field_validator("max_attempts")
    @classmethod
    def _max_attempts(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_ATTEMPTS:
            raise ValueError(f"must be between 1 and {MAX_ATTEMPTS}, not {value}")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float | None) -> float | None:
        if value is not None and not value <= MAX_JOB_TIMEOUT_S:
            shown = format_duration(value) if value <= 1e9 else f"{value:.3g} s"  # 1e300: not 300 digits
            raise ValueError(f"must be at most {format_duration(MAX_JOB_TIMEOUT_S)} ({MAX_JOB_TIMEOUT_S:.0f} s), "
                             f"not {shown}")  # fmt: skip
        return value

    @field_validator("name")
    @classmethod
    def _display_name(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():  # a newline in a name forges lines of a log or table
            raise ValueError("a display name may not hold control characters (newlines, tabs, \\x00 …)")
        return value

    @field_validator("id")
    @classmethod
    def _job_id(cls, value: str | None) -> str | None:
        if value is not None and not _JOB_ID.fullmatch(value):
            raise ValueError("use letters, digits, '.', '_' and '-' (at most 128, starting with a letter or digit)")
        return value


class JobRequest(JobOptions):
    """A job as clients submit it (the body of ``POST /v1/jobs``)."""

    function: str = Field(description="'package.module:function' to call.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments (JSON).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (JSON).")

    @field_validator("function")
    @classmethod
    def _reference(cls, value: str) -> str:
        try:
            return validate_reference(value)
        except Exception as exc:  # noqa: BLE001 - reported by pydantic with the field path
            raise ValueError(getattr(exc, "message", str(exc)).removeprefix("function: ")) from None


class JobSubmission(JobRequest):
    """A job as it crosses the Ray hop to CORTEX: the request, and what the client path adds.

    ``client.jobs.submit`` sends the call pickled (``payload``, or ``payloadDigest`` when it is
    too large to inline); the HTTP route adds the trace context. CORTEX reads the fields as they
    are: whoever builds a submission validates it (``model_validate``) or builds it from values
    already validated (``JobsAPI``).
    """

    payload: str | None = Field(default=None, description="base64 cloudpickle of (fn | None, args, kwargs).")
    payload_digest: str | None = Field(default=None, description="The ENGRAM blob of a payload too large to inline.")
    principal: str | None = Field(default=None, description="Who submits, when the actor call does not say.")
    trace: dict[str, str] = Field(default_factory=dict, description="W3C trace context of the submitter.")

    @field_validator("function")
    @classmethod
    def _reference(cls, value: str) -> str:
        """Checked in ``_pickled_or_reference``: a pickled call's ``function`` is only its display name."""
        return value

    @model_validator(mode="after")
    def _pickled_or_reference(self) -> JobSubmission:
        """``function`` must be a reference unless the call travels pickled (then it only names it)."""
        if self.payload is None and self.payload_digest is None:
            try:
                validate_reference(self.function)
            except ValidationError as exc:  # reported as pydantic reports a field, so that the error names it
                error = PydanticCustomError("value_error", exc.message.removeprefix("function: "))
                details = InitErrorDetails(type=error, loc=("function",), input=self.function)
                raise PydanticValidationError.from_exception_data(type(self).__name__, [details]) from None
        return self


def digest_call(args: list[Any], kwargs: dict[str, Any]) -> str:
    """A digest of a JSON call's arguments: what a finished job keeps to recognize its own call."""
    canonical = json.dumps([args, kwargs], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(eq=False, slots=True)  # slots: a CORTEX holds many; each is about half the size
class Job:
    """The state CORTEX keeps for one job (journal fields, then runtime-only fields)."""

    id: str
    queue: str
    function: str
    priority: int = 0
    seq: int = 0
    payload: str | None = None  # base64 cloudpickle of (fn | None, args, kwargs)
    payload_digest: str | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 3
    timeout: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    principal: str | None = None
    parents: list[str] = field(default_factory=list)
    trace: dict[str, str] = field(default_factory=dict)  # W3C trace context of the submitter
    submitted_at: float = 0.0
    status: str = "queued"
    attempts: int = 0
    failures: int = 0
    worker: str | None = None
    pool: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    retry_at: float | None = None
    error: str | None = None
    traceback: str | None = None
    result: Envelope | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)  # [{attempt, status, logs: envelope}]
    call_digest: str | None = None  # of the JSON arguments, once a success drops them (idempotency checks)
    turn: int | None = None  # its fair-share turn in its queue's priority level (mnemos.cortex._queue); None: fifo
    # runtime only (never journaled)
    committed: bool = False
    settled: asyncio.Event | None = None
    slot: Any = None  # the WorkerSlot of the running attempt
    timer: asyncio.TimerHandle | None = None  # the running attempt's timeout
    accepted: asyncio.Future[None] | None = None  # the submit record's write, until it is durable
    shown: dict[str, Any] | None = None  # what readers see while a final record is not yet durable

    # -- records ------------------------------------------------------------------------------
    def submit_record(self) -> SubmitRecord:
        """The job's submit record, as the journal keeps it."""
        return SubmitRecord(
            id=self.id,
            ts=self.submitted_at,
            queue=self.queue,
            function=self.function,
            priority=self.priority,
            seq=self.seq,
            resources=self.resources,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            labels=self.labels,
            name=self.name,
            principal=self.principal,
            parents=self.parents,
            trace=self.trace or None,
            payload=self.payload,
            payload_digest=self.payload_digest,
            args=None if self.args is None and self.kwargs is None else self.args or [],
            kwargs=None if self.args is None and self.kwargs is None else self.kwargs or {},
            turn=self.turn,
        )

    @classmethod
    def from_submit(cls, rec: SubmitRecord) -> Job:
        return cls(
            id=rec.id,
            queue=rec.queue or "default",
            function=rec.function,
            priority=rec.priority,
            seq=rec.seq,
            payload=rec.payload,
            payload_digest=rec.payload_digest,
            args=rec.args,
            kwargs=rec.kwargs,
            resources=dict(rec.resources),
            max_attempts=rec.max_attempts or 1,
            timeout=rec.timeout,
            labels=dict(rec.labels),
            name=rec.name,
            principal=rec.principal,
            parents=list(rec.parents),
            trace=dict(rec.trace or {}),
            submitted_at=rec.ts or time.time(),
            turn=rec.turn,
        )

    def invocation(self) -> Invocation:
        """What the worker needs to run an attempt."""
        return Invocation(id=self.id, attempt=self.attempts, function=self.function, owner=self.principal,
                          payload=self.payload, payload_digest=self.payload_digest, args=self.args or [],
                          kwargs=self.kwargs or {})  # fmt: skip

    # -- views --------------------------------------------------------------------------------
    def view(self, *, result: bool = True) -> dict[str, Any]:
        """The job as the API shows it (camelCase, JSON-able): its last durable state."""
        if self.shown is not None:
            return {k: v for k, v in self.shown.items() if result or k not in ("result", "traceback")}
        out: dict[str, Any] = {
            "id": self.id,
            "object": "job",
            "name": self.name,
            "queue": self.queue,
            "priority": self.priority,
            "function": self.function,
            "status": self.status,
            "attempts": self.attempts,
            "maxAttempts": self.max_attempts,
            "timeout": self.timeout,
            "resources": self.resources,
            "labels": self.labels,
            "principal": self.principal,
            "owner": self.owner,
            "worker": self.worker,
            "pool": self.pool,
            "submittedAt": self.submitted_at,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "retryAt": self.retry_at if self.status == "retrying" else None,
            "error": self.error,
        }
        if result and self.result is not None:
            out["result"] = self.result
        if result and self.traceback:
            out["traceback"] = self.traceback
        return out

    @property
    def owner(self) -> str | None:
        """Who owns the job: the subject of the principal that submitted it (set at submit)."""
        return self.principal

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def apply_record(jobs: dict[str, Job], rec: JournalRecord) -> Job | None:
    """Apply one journal record to ``jobs``; returns the job it changed (``None`` if unknown).

    A record for a job already terminal changes nothing, so a result is committed at most once
    even if a record were replayed twice. Records read back are typed by ``parse_record`` first.
    """
    if isinstance(rec, SubmitRecord):
        if rec.id in jobs:
            return jobs[rec.id]
        created = Job.from_submit(rec)
        jobs[created.id] = created
        return created
    if isinstance(rec, WithdrawRecord):
        return jobs.pop(rec.id, None)
    job = jobs.get(rec.id)
    if job is None or job.terminal:
        return None
    if isinstance(rec, StartRecord):
        job.status, job.attempts = "running", rec.attempt
        job.worker, job.pool, job.started_at, job.retry_at = rec.worker, rec.pool, rec.ts, None
    elif isinstance(rec, RequeueRecord):
        job.status, job.worker, job.retry_at, job.turn = "queued", None, None, rec.turn
        if rec.attempt is not None and rec.attempt == job.attempts:  # it never started
            job.attempts -= 1
    elif isinstance(rec, RetryRecord):
        job.status, job.error, job.retry_at = "retrying", rec.error, rec.retry_at
        job.failures = job.failures + 1 if rec.failures is None else rec.failures
        _add_logs(job, rec.attempt, rec.logs, "retried")
    elif isinstance(rec, ResultRecord):
        job.status, job.result, job.error, job.traceback = "succeeded", rec.result, None, None
        if job.args is not None or job.kwargs is not None:
            job.call_digest = digest_call(job.args or [], job.kwargs or {})
        job.payload = job.args = job.kwargs = None  # never run again: the call is not kept in memory
        job.started_at = job.started_at if rec.started is None else rec.started
        job.finished_at = rec.ts if rec.finished is None else rec.finished
        job.worker = rec.worker or job.worker
        _add_logs(job, rec.attempt, rec.logs, "succeeded")
    elif isinstance(rec, FailRecord):
        job.status, job.error, job.traceback, job.finished_at = "failed", rec.error, rec.traceback, rec.ts
        job.failures = job.failures if rec.failures is None else rec.failures
        _add_logs(job, rec.attempt, rec.logs, "failed")
    elif isinstance(rec, CancelRecord):
        job.status, job.finished_at, job.error = "cancelled", rec.ts, rec.reason
        _add_logs(job, rec.attempt, rec.logs, "cancelled")
    return job


def _add_logs(job: Job, attempt: int | None, logs: dict[str, Any] | None, status: str) -> None:
    if logs:
        job.logs.append({"attempt": attempt, "status": status, "logs": logs})


def select(
    jobs: Iterable[Job],
    queue: str | None = None,
    status: str | None = None,
    limit: int = 100,
    labels: dict[str, str] | None = None,
    principal: str | None = None,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Views of the jobs matching the filters, newest first (``status="dead"``: failed).

    Args:
        principal: only the jobs this subject owns.
        before: only jobs submitted before the job of this ``seq`` (a page's cursor).
    """
    if status == "dead":
        status = "failed"
    if status is not None and status not in STATUSES:
        raise ValidationError(f"status: {status!r} is not one of {', '.join(STATUSES)}, dead", param="status")
    out = []
    for job in sorted(jobs, key=lambda j: -j.seq):
        if before is not None and job.seq >= before:
            continue
        if (queue and job.queue != queue) or (status and job.status != status):
            continue
        if (principal is not None and job.principal != principal) or (
            labels and any(job.labels.get(k) != v for k, v in labels.items())
        ):
            continue
        out.append(job.view(result=False))
        if len(out) >= limit:
            break
    return out


def join_logs(parts: list[tuple[int | None, str, str]]) -> str:
    """The logs of a job's attempts: plain for one attempt, with a header per attempt otherwise."""
    if len(parts) == 1:
        return parts[0][2]
    return "".join(f"--- attempt {a} ({s}) ---\n{t}" + ("" if t.endswith("\n") else "\n") for a, s, t in parts)
