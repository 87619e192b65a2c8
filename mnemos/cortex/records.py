"""CORTEX journal records: one pydantic model per kind, told apart by ``t``.

A record is what one state change of one job writes to the journal (``journal/cortex``) and
what ``mnemos.cortex.job.apply_record`` turns into state, live and on replay::

    submit   the job, as admitted                  start    an attempt began on a worker
    requeue  queued again (restart, backoff over)  retry    an attempt failed; another follows
    result   the committed result                  fail     attempts exhausted (or fatal)
    cancel   cancelled by a user                   withdraw a submit answered 503: forget it

On disk a record is a JSON object with camelCase keys (``maxAttempts``, ``payloadDigest``,
``retryAt``) and no nulls; journals written before these models existed have the same keys,
sometimes with explicit nulls, and read back the same. Records are built with validation even
on the dispatch path: with pydantic 2.14 the validated constructor measured faster than
``model_construct`` (about 4-11 us against 8-15 us a record here), whose per-field loop runs in
Python. Records read back go through ``parse_record``, which skips kinds this version does not
know (a newer writer's) as before.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel

__all__ = [
    "KINDS",
    "CancelRecord",
    "FailRecord",
    "JournalRecord",
    "RecordBase",
    "RequeueRecord",
    "ResultRecord",
    "RetryRecord",
    "StartRecord",
    "SubmitRecord",
    "WithdrawRecord",
    "dump_record",
    "parse_record",
]

log = logging.getLogger(__name__)


class RecordBase(BaseModel):
    """Fields every record has. A lenient reader: stored data is never refused for a field it adds.

    Unlike ``CoreModel`` (``extra="forbid"``, for what users write), a record that a newer
    version wrote with one more field must still replay here, so extra keys are ignored.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)

    t: str = Field(description="The kind of record (each subclass fixes it; first on disk, as before).")
    id: str = Field(description="The job the record is about.")
    ts: float | None = Field(default=None, description="When CORTEX wrote it (epoch seconds).")


class SubmitRecord(RecordBase):
    """The job as admitted (queue defaults applied): enough to run it again after a restart."""

    t: Literal["submit"] = "submit"
    queue: str = "default"
    function: str
    priority: int = 0
    seq: int = 0
    resources: dict[str, Any] = Field(default_factory=dict)
    max_attempts: int = 1
    timeout: float | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    name: str | None = None
    principal: str | None = None
    parents: list[str] = Field(default_factory=list)
    trace: dict[str, str] | None = None
    payload: str | None = Field(default=None, description="base64 cloudpickle of (fn | None, args, kwargs).")
    payload_digest: str | None = Field(default=None, description="The ENGRAM blob of a payload too large to inline.")
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    turn: int | None = Field(default=None, description="Its fair-share turn (start tag) in its queue's priority "
                             "level; absent: a fifo queue, or written before turns were journaled.")


class StartRecord(RecordBase):
    """Attempt ``attempt`` was sent to ``worker`` of ``pool``."""

    t: Literal["start"] = "start"
    attempt: int
    worker: str | None = None
    pool: str | None = None


class RequeueRecord(RecordBase):
    """Queued again: CORTEX restarted while the job ran, its retry backoff elapsed, or its worker
    gave it back before it started (``attempt``: that attempt never ran and is not counted)."""

    t: Literal["requeue"] = "requeue"
    reason: str | None = None
    attempt: int | None = None
    turn: int | None = Field(default=None, description="The turn it was queued again with: its level's virtual "
                             "time then (the front of the round); absent: fifo, or written before turns were.")


class _Outcome(RecordBase):
    """What an attempt came to, as its worker reported it."""

    attempt: int | None = None
    worker: str | None = None
    logs: dict[str, Any] | None = Field(default=None, description="The attempt's output (a text envelope).")


class RetryRecord(_Outcome):
    """The attempt failed; the job runs again at ``retryAt``."""

    t: Literal["retry"] = "retry"
    failures: int | None = None
    error: str | None = None
    retry_at: float | None = None


class ResultRecord(_Outcome):
    """The job's result, committed once."""

    t: Literal["result"] = "result"
    result: dict[str, Any] | None = Field(default=None, description="The result envelope (inline or an ENGRAM digest).")
    started: float | None = None
    finished: float | None = None


class FailRecord(_Outcome):
    """The job failed for good (attempts exhausted, a fatal error, or it cannot be run)."""

    t: Literal["fail"] = "fail"
    failures: int | None = None
    error: str | None = None
    traceback: str | None = None


class CancelRecord(RecordBase):
    """Cancelled by a user (``reason`` names who); a running attempt's output so far in ``logs``."""

    t: Literal["cancel"] = "cancel"
    reason: str | None = None
    attempt: int | None = None
    logs: dict[str, Any] | None = Field(default=None, description="The cancelled attempt's output so far.")


class WithdrawRecord(RecordBase):
    """A submit whose write outlived the journal timeout (answered 503): replay forgets the job."""

    t: Literal["withdraw"] = "withdraw"


JournalRecord = Annotated[
    SubmitRecord
    | StartRecord
    | RequeueRecord
    | RetryRecord
    | ResultRecord
    | FailRecord
    | CancelRecord
    | WithdrawRecord,
    Field(discriminator="t"),
]
"""Any journal record; ``t`` says which."""

KINDS = frozenset({"submit", "start", "requeue", "retry", "result", "fail", "cancel", "withdraw"})
_ADAPTER: TypeAdapter[JournalRecord] = TypeAdapter(JournalRecord)


def parse_record(raw: Any) -> JournalRecord | None:
    """A record read back from the journal, typed; ``None`` for one this version cannot apply.

    A kind this version does not know (a newer writer's, another log's) is skipped silently, as
    before; a known kind missing what it needs (a damaged record) is skipped with a warning.
    """
    if isinstance(raw, RecordBase):
        return raw  # type: ignore[return-value]
    if not isinstance(raw, dict) or raw.get("t") not in KINDS:
        return None
    try:
        return _ADAPTER.validate_python(raw)
    except PydanticValidationError as exc:
        log.warning("journal record of job %r skipped: %s", raw.get("id"), exc.errors()[0].get("msg"))
        return None


def dump_record(record: RecordBase) -> dict[str, Any]:
    """The record as the journal stores it: camelCase keys, no nulls."""
    return record.model_dump(by_alias=True, exclude_none=True)
