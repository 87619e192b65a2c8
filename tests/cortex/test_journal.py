"""The job journal: group commit, durability before acknowledgement, replay, exactly-once results."""

from __future__ import annotations

import asyncio
from typing import Any

from mnemos.cortex.journal import LOG, JobJournal, JournalView, read_records, rebuild
from mnemos.cortex.records import StartRecord, SubmitRecord
from mnemos.engram import Engram
from mnemos.trace.lineage import LineageWriter, events


def _submit(job_id: str, seq: int = 1) -> dict[str, Any]:
    return {"t": "submit", "id": job_id, "queue": "default", "function": "m:f", "seq": seq, "maxAttempts": 3, "ts": 1.0}


def _typed(job_id: str, seq: int = 1) -> SubmitRecord:
    return SubmitRecord.model_validate(_submit(job_id, seq))


def test_group_commit_writes_one_segment_per_batch(engram: Engram) -> None:
    async def scenario() -> list[int]:
        journal = JobJournal(engram, batch_ms=20)
        futures = [journal.append(_typed(f"j{i}", i)) for i in range(100)]
        assert not futures[0].done()  # nothing is acknowledged before it is durable
        await asyncio.gather(*futures)
        assert len(engram.segments(LOG)) == 1  # one write for the 100 records
        second = [journal.append(StartRecord(id=f"j{i}", attempt=1, ts=2.0)) for i in range(50)]
        await asyncio.gather(*second)
        return [journal.segments_written, journal.records_written]

    assert asyncio.run(scenario()) == [2, 150]
    assert len(read_records(engram)) == 150


def test_records_appended_while_writing_form_the_next_batch(local_engram: Engram) -> None:
    async def scenario() -> int:
        journal = JobJournal(local_engram, batch_ms=0)
        pending = []
        for i in range(20):
            pending.append(journal.append(_typed(f"j{i}", i)))
            await asyncio.sleep(0)  # appends interleave with writes
        await asyncio.gather(*pending)
        return journal.segments_written

    segments = asyncio.run(scenario())
    assert 1 <= segments < 20  # grouped, never one write per record
    assert [r["id"] for r in read_records(local_engram)] == [f"j{i}" for i in range(20)]


def test_lineage_is_flushed_with_the_batch(local_engram: Engram) -> None:
    lineage = LineageWriter(local_engram)

    async def scenario() -> None:
        journal = JobJournal(local_engram, batch_ms=1, lineage=lineage)
        lineage.record("job:j1", "intent", function="m:f")
        await journal.append(_typed("j1"))

    asyncio.run(scenario())
    assert [e["id"] for e in events(local_engram)] == ["job:j1"]


def test_replay_rebuilds_each_job_and_never_commits_twice() -> None:
    records = [
        _submit("done", 1),
        _submit("running", 2),
        _submit("retrying", 3),
        _submit("cancelled", 4),
        {"t": "start", "id": "done", "attempt": 1, "worker": "w1", "pool": "cpu-a", "ts": 2.0},
        {"t": "result", "id": "done", "attempt": 1, "result": {"encoding": "json", "value": 1, "bytes": 1}, "ts": 3.0},
        # a second result for the same job (e.g. a duplicated segment) changes nothing
        {"t": "result", "id": "done", "attempt": 2, "result": {"encoding": "json", "value": 2, "bytes": 1}, "ts": 4.0},
        {"t": "start", "id": "running", "attempt": 1, "worker": "w2", "ts": 2.0},
        {"t": "start", "id": "retrying", "attempt": 1, "ts": 2.0},
        {"t": "retry", "id": "retrying", "attempt": 1, "failures": 1, "error": "boom", "retryAt": 9.0, "ts": 3.0},
        {"t": "cancel", "id": "cancelled", "ts": 2.0},
        {"t": "start", "id": "cancelled", "attempt": 1, "ts": 3.0},  # after a terminal state: ignored
        {"job": "x", "state": "from another writer"},  # unknown records are skipped
    ]
    jobs = rebuild(records)
    assert {j.id: j.status for j in jobs.values()} == {
        "done": "succeeded",
        "running": "running",
        "retrying": "retrying",
        "cancelled": "cancelled",
    }
    assert jobs["done"].result == {"encoding": "json", "value": 1, "bytes": 1}
    assert jobs["done"].committed and not jobs["running"].committed
    assert (jobs["retrying"].failures, jobs["retrying"].error, jobs["retrying"].retry_at) == (1, "boom", 9.0)


def test_journal_view_reads_jobs_without_a_cluster(local_engram: Engram) -> None:
    local_engram.append(
        LOG,
        [
            _submit("a", 1),
            {"t": "start", "id": "a", "attempt": 1, "ts": 2.0},
            {"t": "retry", "id": "a", "attempt": 1, "failures": 1, "error": "x", "ts": 3.0,
             "logs": {"encoding": "text", "value": "first\n", "bytes": 6}},
            {"t": "start", "id": "a", "attempt": 2, "ts": 4.0},
            {"t": "result", "id": "a", "attempt": 2, "result": {"encoding": "json", "value": 5, "bytes": 1},
             "logs": {"encoding": "text", "value": "second\n", "bytes": 7}, "ts": 5.0},
            _submit("b", 2),
        ],
    )  # fmt: skip
    view = JournalView(local_engram)
    assert view.get("a")["status"] == "succeeded" and view.get("a")["attempts"] == 2
    assert [j["id"] for j in view.list()] == ["b", "a"]
    assert [j["id"] for j in view.list(status="succeeded")] == ["a"]
    assert view.logs("a") == "--- attempt 1 (retried) ---\nfirst\n--- attempt 2 (succeeded) ---\nsecond\n"
