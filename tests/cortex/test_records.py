"""Typed journal records: the same JSON on disk as before, journals of the previous version replay."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from mnemos._model import to_validation_error
from mnemos.cortex.checkpoint import CHECKPOINTS, job_state, load
from mnemos.cortex.job import Job, JobSubmission, apply_record
from mnemos.cortex.journal import LOG, rebuild
from mnemos.cortex.records import (
    CancelRecord,
    FailRecord,
    RequeueRecord,
    ResultRecord,
    RetryRecord,
    StartRecord,
    SubmitRecord,
    WithdrawRecord,
    dump_record,
    parse_record,
)
from mnemos.engram import Engram
from mnemos.engram.logs import stem

_RESULT = {"encoding": "json", "value": 5, "bytes": 1}
_LOGS = {"encoding": "text", "value": "boom\n", "bytes": 5}


def _old_submit(job_id: str, seq: int, **extra: Any) -> dict[str, Any]:
    """A submit record exactly as the dict-building version wrote it (explicit nulls included)."""
    return {"t": "submit", "id": job_id, "queue": "default", "function": "pkg.mod:fn", "priority": 0, "seq": seq,
            "resources": {}, "maxAttempts": 3, "timeout": None, "labels": {"team": "a"}, "name": None,
            "principal": "alice", "parents": [], "ts": 1.0, **extra}  # fmt: skip


# Every kind, as the previous version put it on disk (``None`` values written, not left out).
OLD_JOURNAL = [
    [
        _old_submit("ok", 1, args=[2, 3], kwargs={}),
        _old_submit("retried", 2, payload="gASVBAAAAAAAAAB9lC4=", trace={"traceparent": "00-ab-cd-01"}),
        _old_submit("failed", 3, payloadDigest="sha256:" + "0" * 64, timeout=30.0),
        _old_submit("cancelled", 4),
        _old_submit("restarted", 5),
        _old_submit("withdrawn", 6),
    ],
    [
        {"t": "start", "id": "ok", "attempt": 1, "worker": "cpu-a-0", "pool": "cpu-a", "ts": 2.0},
        {"t": "start", "id": "retried", "attempt": 1, "worker": "cpu-a-1", "pool": "cpu-a", "ts": 2.0},
        {"t": "start", "id": "failed", "attempt": 1, "worker": "cpu-a-0", "pool": "cpu-a", "ts": 2.0},
        {"t": "start", "id": "restarted", "attempt": 1, "worker": "cpu-a-1", "pool": "cpu-a", "ts": 2.0},
        {"t": "withdraw", "id": "withdrawn", "ts": 2.0},
    ],
    [
        {"id": "ok", "attempt": 1, "worker": "cpu-a-0", "logs": None, "ts": 3.0, "t": "result", "result": _RESULT,
         "started": 2.1, "finished": 2.9},
        {"id": "retried", "attempt": 1, "worker": "cpu-a-1", "logs": _LOGS, "ts": 3.0, "t": "retry", "failures": 1,
         "error": "ValueError: boom", "retryAt": 3.5},
        {"t": "requeue", "id": "retried", "reason": "backoff elapsed", "ts": 3.5},
        {"id": "failed", "attempt": 1, "worker": "cpu-a-0", "logs": None, "ts": 3.0, "t": "fail", "failures": 1,
         "error": "ModuleNotFoundError: pkg", "traceback": "Traceback …"},
        {"t": "cancel", "id": "cancelled", "reason": "cancelled by bob", "ts": 3.0},
        {"t": "requeue", "id": "restarted", "reason": "cortex restarted", "ts": 4.0},
        {"t": "lease", "id": "ok", "holder": "a newer CORTEX"},  # a kind this version does not know
    ],
]  # fmt: skip


def _check_old_journal(jobs: dict[str, Job]) -> None:
    assert {i: j.status for i, j in jobs.items()} == {
        "ok": "succeeded", "retried": "queued", "failed": "failed", "cancelled": "cancelled", "restarted": "queued",
    }  # fmt: skip
    ok, retried, failed = jobs["ok"], jobs["retried"], jobs["failed"]
    assert (ok.result, ok.started_at, ok.finished_at, ok.worker, ok.args) == (_RESULT, 2.1, 2.9, "cpu-a-0", None)
    assert (ok.labels, ok.principal, ok.max_attempts, ok.committed) == ({"team": "a"}, "alice", 3, True)
    assert (retried.payload, retried.trace, retried.failures, retried.attempts) == (
        "gASVBAAAAAAAAAB9lC4=", {"traceparent": "00-ab-cd-01"}, 1, 1,
    )  # fmt: skip
    assert retried.logs == [{"attempt": 1, "status": "retried", "logs": _LOGS}] and not retried.committed
    assert (failed.payload_digest, failed.timeout, failed.error, failed.traceback, failed.finished_at) == (
        "sha256:" + "0" * 64, 30.0, "ModuleNotFoundError: pkg", "Traceback …", 3.0,
    )  # fmt: skip
    assert (jobs["cancelled"].error, jobs["restarted"].worker) == ("cancelled by bob", None)


def test_a_journal_written_by_the_previous_version_replays(local_engram: Engram) -> None:
    for segment in OLD_JOURNAL:
        local_engram.append(LOG, segment)
    _check_old_journal(load(local_engram, LOG).jobs)
    _check_old_journal(rebuild(rec for segment in OLD_JOURNAL for rec in segment))


def test_a_checkpoint_written_by_the_previous_version_loads_with_its_tail(local_engram: Engram) -> None:
    covered = local_engram.append(LOG, OLD_JOURNAL[0])
    state = {"id": "ok", "queue": "default", "function": "pkg.mod:fn", "priority": 0, "seq": 1, "payload": None,
             "payload_digest": None, "args": [2, 3], "kwargs": {}, "resources": {}, "max_attempts": 3, "timeout": None,
             "labels": {"team": "a"}, "name": None, "principal": "alice", "parents": [], "trace": {},
             "submitted_at": 1.0, "status": "queued", "attempts": 0, "failures": 0, "worker": None, "pool": None,
             "started_at": None, "finished_at": None, "retry_at": None, "error": None, "traceback": None,
             "result": None, "logs": []}  # fmt: skip
    doc = {"after": covered, "seq": 6, "takenAt": 1.5, "jobs": [state]}
    local_engram.write_bytes(f"{CHECKPOINTS}/{stem(covered)}.json", json.dumps(doc).encode())
    local_engram.append(LOG, OLD_JOURNAL[1][:1])
    local_engram.append(LOG, OLD_JOURNAL[2][:1])
    loaded = load(local_engram, LOG)
    assert (loaded.checkpoint is not None, loaded.tail, loaded.seq) == (True, 2, 6)
    assert list(loaded.jobs) == ["ok"] and loaded.jobs["ok"].status == "succeeded"


def _records_cortex_writes() -> list[Any]:
    """One record of each kind, built as CORTEX builds them."""
    job = Job(id="j", queue="default", function="pkg.mod:fn", seq=7, payload="eA==", resources={"gpus": 1.0},
              max_attempts=2, timeout=60.0, labels={"team": "a"}, principal="alice", submitted_at=1.0)  # fmt: skip
    return [
        job.submit_record(),
        StartRecord(id="j", attempt=1, worker="w0", pool="cpu-a", ts=2.0),
        RetryRecord(id="j", attempt=1, worker="w0", logs=None, ts=3.0, failures=1, error="boom", retry_at=3.5),
        RequeueRecord(id="j", reason="backoff elapsed", ts=3.5),
        StartRecord(id="j", attempt=2, worker="w1", pool="cpu-a", ts=4.0),
        ResultRecord(id="j", attempt=2, worker="w1", logs=_LOGS, ts=5.0, result=_RESULT, started=4.1, finished=4.9),
    ]


def test_records_are_stored_camel_case_without_nulls_and_read_back_equal() -> None:
    written = _records_cortex_writes()
    stored = [dump_record(rec) for rec in written]
    assert [next(iter(doc)) for doc in stored] == ["t"] * len(stored)  # the kind first, as before
    assert stored[0] == {
        "t": "submit", "id": "j", "ts": 1.0, "queue": "default", "function": "pkg.mod:fn", "priority": 0, "seq": 7,
        "resources": {"gpus": 1.0}, "maxAttempts": 2, "timeout": 60.0, "labels": {"team": "a"}, "principal": "alice",
        "parents": [], "payload": "eA==",
    }  # fmt: skip
    assert stored[2] == {"t": "retry", "id": "j", "ts": 3.0, "attempt": 1, "worker": "w0", "failures": 1,
                         "error": "boom", "retryAt": 3.5}  # fmt: skip
    assert all(None not in doc.values() for doc in stored)
    assert [parse_record(json.loads(json.dumps(doc))) for doc in stored] == written


def test_live_and_replayed_state_are_the_same() -> None:
    """``apply_record`` on the records as built (live) and as read back (restart) gives one state."""
    live: dict[str, Job] = {}
    for rec in _records_cortex_writes():
        apply_record(live, rec)
    replayed = rebuild(json.loads(json.dumps([dump_record(rec) for rec in _records_cortex_writes()])))
    assert job_state(replayed["j"]) == job_state(live["j"])
    assert (live["j"].status, live["j"].attempts, live["j"].worker, live["j"].payload) == ("succeeded", 2, "w1", None)


def test_withdraw_cancel_and_fail_apply_to_typed_records() -> None:
    jobs = rebuild([_old_submit("a", 1), _old_submit("b", 2), _old_submit("c", 3)])
    assert apply_record(jobs, WithdrawRecord(id="a", ts=2.0)) is not None and "a" not in jobs
    apply_record(jobs, CancelRecord(id="b", reason="cancelled by bob", ts=2.0))
    apply_record(jobs, FailRecord(id="c", error="no declared pool with workers can run it", ts=2.0))
    assert (jobs["b"].status, jobs["c"].status, jobs["c"].failures) == ("cancelled", "failed", 0)
    assert apply_record(jobs, StartRecord(id="b", attempt=1, ts=3.0)) is None  # terminal: nothing changes


def test_unknown_kinds_are_skipped_and_damaged_records_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert parse_record({"t": "lease", "id": "x"}) is None
    assert parse_record({"job": "x", "state": "from another writer"}) is None
    assert parse_record(["not", "a", "record"]) is None
    with caplog.at_level(logging.WARNING, logger="mnemos.cortex.records"):
        assert parse_record({"t": "start", "id": "x"}) is None  # no attempt
    assert "journal record of job 'x' skipped" in caplog.text
    assert parse_record({"t": "start", "id": "x", "attempt": 1, "futureField": True}) == StartRecord(
        id="x", attempt=1
    )  # a field a newer version adds is ignored


def test_a_submission_is_a_job_request_whose_pickled_call_needs_no_reference() -> None:
    pickled = JobSubmission.model_validate({"function": "__main__:<lambda>", "payload": "eA==", "maxAttempts": 2})
    assert (pickled.function, pickled.max_attempts) == ("__main__:<lambda>", 2)
    assert JobSubmission(function="pkg.mod:fn", payload_digest="sha256:ab").payload_digest == "sha256:ab"
    with pytest.raises(PydanticValidationError, match="function reference") as refused:
        JobSubmission(function="not a reference")
    assert to_validation_error(refused.value).param == "function"  # a 422 names the field
    with pytest.raises(ValueError, match="principl"):
        JobSubmission.model_validate({"function": "pkg.mod:fn", "principl": "x"})  # typos are refused
    with pytest.raises(ValueError, match="letters, digits"):
        JobSubmission.model_validate({"function": "pkg.mod:fn", "id": "no spaces"})


def test_submit_records_round_trip_the_submission_fields() -> None:
    rec = SubmitRecord.model_validate(_old_submit("a", 1, payloadDigest="sha256:cd", trace={"traceparent": "t"}))
    job = Job.from_submit(rec)
    again = dump_record(job.submit_record())
    assert again["payloadDigest"] == "sha256:cd" and again["trace"] == {"traceparent": "t"}
    assert "args" not in again and "name" not in again
