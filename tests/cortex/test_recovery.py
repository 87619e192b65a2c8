"""Failures CORTEX must survive: a NEURON worker killed mid-job, CORTEX itself killed mid-run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import ray
from cortex_support import journal_records, wait_until

from mnemos.errors import ConflictError

T = "mnemos.cortex.testing"


def test_a_killed_worker_is_replaced_and_its_job_completes_elsewhere(client: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job = client.jobs.submit(f"{T}:wait_for_file", str(gate), value="survived")
    wait_until(Path(f"{gate}.started").exists, what="the job to start")
    victim = job.info()["worker"]
    replaced_before = client.jobs.stats()["workersReplaced"]
    ray.kill(ray.get_actor(victim, namespace="mnemos"))  # mid-job
    gate.touch()  # lets the retried attempt finish at once
    assert job.result(timeout=180) == "survived"
    info = job.info()
    assert info["worker"] != victim and info["attempts"] == 2
    stats = client.jobs.stats()
    assert stats["workersReplaced"] == replaced_before + 1
    workers = [w["name"] for p in stats["pools"] if p["name"] == "cpu-a" for w in p["workers"]]
    assert len(workers) == 2 and victim not in workers  # the pool is back to its size
    retry = [r for r in journal_records(client.engram) if r.get("t") == "retry" and r["id"] == job.id]
    assert len(retry) == 1 and f"worker {victim} was lost" in retry[0]["error"]


def test_cortex_killed_mid_run_restarts_and_commits_each_result_once(client: Any, cortex: Any) -> None:
    handles = client.jobs.submit_many(f"{T}:stamp", [(0.2, i) for i in range(200)])  # >= 1.2 s of work
    ids = {h.id for h in handles}
    # Kill once some starts are durable in the journal and results are still missing, so that
    # the restart has running jobs to queue again (bounded wait, no sleeps on the CORTEX side).
    def started_unfinished() -> bool:
        records = journal_records(client.engram)
        done = {r["id"] for r in records if r.get("t") == "result"}
        return any(r.get("t") == "start" and r["id"] in ids and r["id"] not in done for r in records)

    wait_until(started_unfinished, what="a durable start record of an unfinished job")
    before = ray.get(cortex.info.remote())
    assert before["active"] > 0  # the kill below happens while jobs are queued or running
    ray.kill(cortex, no_restart=False)
    results = client.jobs.results(handles, timeout=600)  # waits out the restart
    assert [r["value"] for r in results] == list(range(200))
    after = ray.get(cortex.info.remote())
    assert after["restarted"] and after["pid"] != before["pid"]
    records = journal_records(client.engram)
    committed = Counter(r["id"] for r in records if r.get("t") == "result" and r["id"] in ids)
    assert set(committed) == ids and set(committed.values()) == {1}  # exactly one result each
    requeued = [r for r in records if r.get("t") == "requeue" and r.get("reason") == "cortex restarted"]
    assert requeued  # what was running when CORTEX died was queued again
    assert all(r["id"] in ids for r in requeued)
    # the restarted CORTEX keeps working
    assert client.jobs.submit(f"{T}:add", 1, 2).result(timeout=120) == 3


def test_a_busy_cortex_is_not_replaced_by_other_settings(client: Any, cortex: Any, tmp_path: Path) -> None:
    from mnemos.config import load_settings
    from mnemos.cortex import ensure
    from mnemos.engram import Engram

    gate = tmp_path / "gate"
    job = client.jobs.submit(f"{T}:wait_for_file", str(gate))
    other = load_settings(engram={"uri": str(tmp_path / "other")})
    with pytest.raises(ConflictError, match="CORTEX is running with other settings .* active jobs"):
        ensure(other, Engram.from_settings(other))
    gate.touch()
    job.result(timeout=120)
    same = ensure(client.settings, client.engram)  # the same settings: the running actor
    assert ray.get(same.info.remote())["pid"] == ray.get(cortex.info.remote())["pid"]
