"""Checkpoints and retention: a restart reads live jobs and the tail; finished jobs go to the archive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cortex_support import PrivateCortex, T

from mnemos.cortex.checkpoint import Cut, covered_by_checkpoints, find_archived, job_state, load
from mnemos.cortex.journal import LOG, read_records, rebuild
from mnemos.engram import Engram
from mnemos.wraith.compaction import compact_log


def _submit(job_id: str) -> dict[str, Any]:
    return {"t": "submit", "id": job_id, "queue": "default", "function": f"{T}:add", "seq": ord(job_id[0]), "ts": 1.0}


def _result(job_id: str, value: int) -> dict[str, Any]:
    return {"t": "result", "id": job_id, "attempt": 1, "result": {"encoding": "json", "value": value, "bytes": 1},
            "ts": 2.0}  # fmt: skip


def _cut(engram: Engram, evict: set[str]) -> Cut:
    """A cut of the journal so far, as CORTEX would take it (``evict``: finished jobs leaving memory)."""
    jobs = rebuild(read_records(engram))
    live = [job_state(j) for i, j in jobs.items() if i not in evict]
    return Cut(jobs=live, evicted=[job_state(jobs[i]) for i in evict], seq=max(j.seq for j in jobs.values()))


def _states(engram: Engram) -> dict[str, str]:
    return {i: j.status for i, j in load(engram, LOG).jobs.items()}


def test_restart_reads_the_newest_checkpoint_and_the_tail_also_across_compactions(local_engram: Engram) -> None:
    first = local_engram.append(LOG, [_submit("a"), _submit("b")])
    covered = local_engram.append(LOG, [_result("a", 1), _submit("c")])
    _cut(local_engram, evict={"a"}).write(local_engram, covered)
    local_engram.append(LOG, [_result("b", 2)])
    local_engram.append(LOG, [_submit("d")])
    loaded = load(local_engram, LOG)
    assert loaded.tail == 2 and loaded.checkpoint is not None  # two records read past the checkpoint
    assert _states(local_engram) == {"b": "succeeded", "c": "queued", "d": "queued"}
    archived = find_archived(local_engram, "a")
    assert archived is not None and archived.status == "succeeded" and archived.result["value"] == 1
    assert find_archived(local_engram, "zz") is None

    # A second checkpoint; WRAITH drops the segments both kept checkpoints cover, then merges the
    # rest across the newest checkpoint's boundary: the tail after it is still told apart.
    newest = local_engram.append(LOG, [_result("c", 3)])
    _cut(local_engram, evict={"a", "b", "c"}).write(local_engram, newest)
    assert covered_by_checkpoints(local_engram) == covered
    local_engram.append(LOG, [_result("d", 4)])
    report = compact_log(local_engram, LOG, min_age=0, keep_replaced=0)
    assert sorted(report.dropped) == sorted([first, covered]) and report.segments_after == 1
    loaded = load(local_engram, LOG)
    assert loaded.tail == 1 and {i: j.status for i, j in loaded.jobs.items()} == {"d": "succeeded"}
    assert [find_archived(local_engram, i).status for i in "abc"] == ["succeeded"] * 3  # type: ignore[union-attr]


def test_finished_jobs_leave_memory_stay_readable_and_a_restart_reads_only_live_state(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    cortex = PrivateCortex(tmp_path, cortex_settings, retention=0, checkpoint_records=100)
    try:
        specs = [{"id": f"r{i}", "function": f"{T}:add", "args": [i, 1]} for i in range(300)]
        ids = cortex.call("submit_many", specs)
        assert {v["status"] for v in cortex.call("wait_many", ids, 120)} == {"succeeded"}
        journal = cortex.call("checkpoint")
        assert journal["checkpoints"] >= 2  # 900 records with a checkpoint every 100, and this one
        assert cortex.call("stats")["memory"]["jobs"] == 0  # retention 0: every finished job has left
        view = cortex.call("get", "r7")  # read back from the archive
        assert view["status"] == "succeeded" and view["result"]["value"] == 8
        assert cortex.call("wait", "r299", 5)["result"]["value"] == 300
        cortex.crash()
        loaded = cortex.call("info")["loaded"]
        assert loaded["checkpoint"] and loaded["jobs"] == 0 and loaded["tailRecords"] < 100
        assert cortex.call("get", "r0")["result"]["value"] == 1
        [again] = cortex.submit("after-restart", "add", 2, 2)
        assert cortex.call("wait", again, 120)["result"]["value"] == 4
    finally:
        cortex.close()
