"""The ``wraith`` actor on a real Ray cluster: state in ENGRAM survives a restart; runs go to CORTEX."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import ray

from mnemos.client import Client
from mnemos.engram import Engram
from mnemos.wraith.schedule import entries_from_settings, read_state
from mnemos.wraith.scheduler import WraithScheduler

DAY = 86400.0


def _actor(settings, engram: Engram):
    name = f"wraith-test-{uuid.uuid4().hex[:6]}"  # not the platform's `wraith`
    return WraithScheduler.options(name=name, namespace="mnemos").remote(settings, engram)


def test_state_survives_downtime_and_missed_runs_run_once(ray_cluster, settings) -> None:
    engram = Engram.from_settings(settings)
    actor = _actor(settings, engram)
    try:
        t0 = time.time()
        ray.get(actor.tick.remote(t0))
        first = read_state(engram)
        assert set(first) == {"compact-logs", "replay-events", "retention", "backup"}
        # first sight (by this tick or the actor's own first one): counted from about now
        assert all(abs(s["lastSlot"] - t0) < 120 and s["nextRun"] > s["lastSlot"] for s in first.values())

        ray.kill(actor, no_restart=True)  # down; a new incarnation reads its state back from ENGRAM
        actor = _actor(settings, engram)
        assert ray.get(actor.ping.remote()) is True
        assert {k: v["lastSlot"] for k, v in ray.get(actor.state.remote()).items()} == {
            k: v["lastSlot"] for k, v in first.items()
        }

        later = t0 + 2 * DAY  # two days down: 192 slots of replay-events, 8 backups, 2 nightly runs
        ray.get(actor.tick.remote(later))
        after = read_state(engram)
        for name in first:
            assert after[name]["lastRun"] == later and after[name]["lastReason"] == "missed", name
            assert after[name]["nextRun"] > later
        ray.get(actor.tick.remote(later + 1))
        assert read_state(engram) == after  # nothing runs twice for the same slot
        jobs = [s["lastJob"] for s in after.values() if s.get("lastJob")]
        assert len(jobs) == 4, after  # each task submitted once, to CORTEX
        views = Client(settings, connected=True).jobs.wait(jobs, timeout=300)
        assert [v["status"] for v in views] == ["succeeded"] * 4, views
        assert {v["queue"] for v in views} == {"wraith"}
    finally:
        ray.kill(actor, no_restart=True)


def test_gitops_and_backup_entries_come_from_settings() -> None:
    gitops = SimpleNamespace(repo="https://example.com/ops.git", path="environments/dev", interval=300.0)
    backups = SimpleNamespace(schedule="15 */4 * * *")
    fake = SimpleNamespace(wraith=SimpleNamespace(cronjobs=[], gitops=gitops), engram=SimpleNamespace(backups=backups))
    backup, sync = entries_from_settings(fake)
    assert (backup.name, backup.schedule) == ("backup", "15 */4 * * *")  # the seed's engram.backups.schedule
    assert (sync.name, sync.interval) == ("gitops-sync", 300.0)
    gitops.repo = None
    assert [e.name for e in entries_from_settings(fake)] == ["backup"]


def test_a_run_goes_through_cortex(ray_cluster, settings) -> None:
    engram = Engram.from_settings(settings)
    for i in range(5):
        engram.append("lineage", [{"id": f"run:{i}", "type": "execution", "parents": [], "attrs": {}}])
    actor = _actor(settings, engram)
    try:
        result = ray.get(actor.run_now.remote("backup"))
        assert result["status"] == "submitted", result
        client = Client(settings, connected=True)
        job = client.jobs.get(result["job"])
        report = job.result(timeout=120)
        assert report["snapshot"] and report["documents"] >= 5
        assert read_state(engram)["backup"]["lastJob"] == result["job"]
        assert engram.read_json("wraith/runs/backup.json")["status"] == "succeeded"
    finally:
        ray.kill(actor, no_restart=True)


def test_replay_retries_each_dead_job_once(ray_cluster, settings) -> None:
    from mnemos.wraith.tasks import replay_events

    client = Client(settings, connected=True)
    dead = client.jobs.submit("mnemos.cortex.testing:fail", "boom", queue="wraith", max_attempts=1)
    assert dead.wait(timeout=120)["status"] == "failed"

    first = replay_events(client.engram.uri, None, {"limit": 50})

    assert list(first["replayed"]) == [dead.id]
    replay = client.jobs.get(first["replayed"][dead.id])
    assert replay.wait(timeout=120)["status"] == "failed"  # it fails again: stays dead
    second = replay_events(client.engram.uri, None, {"limit": 50})
    assert second["replayed"] == {} and sorted(second["skipped"]) == sorted([dead.id, replay.id])


def test_replay_keeps_the_owner_and_leaves_step_jobs_to_their_runs(ray_cluster, settings) -> None:
    """A replay was owned by WRAITH's principal (its owner no longer saw it: 404), and a failed pipeline
    step ran again outside its run, whatever its retries."""
    from mnemos.cortex.job import RUN_LABEL
    from mnemos.wraith.replay import REPLAYED
    from mnemos.wraith.tasks import replay_events

    client = Client(settings, connected=True)
    if client.engram.exists(REPLAYED):  # the test before left its dead jobs: start from none replayed
        client.engram.delete(REPLAYED)
    cortex = client.jobs.cortex
    mine, step = (ray.get(cortex.submit_many.remote([{"function": "mnemos.cortex.testing:fail", "args": ["boom"],
                                                      "queue": "wraith", "max_attempts": 1, "labels": labels}],
                                                    "apikey:ana"))[0]
                  for labels in ({}, {RUN_LABEL: "greet-20261204-000000-abcd"}))  # fmt: skip
    for job_id in (mine, step):
        assert client.jobs.get(job_id).wait(timeout=120)["status"] == "failed"
    mine_owner = client.jobs.get(mine).info()["owner"]
    replayed = replay_events(client.engram.uri, None, {"limit": 50})
    assert mine in replayed["replayed"] and step in replayed["skipped"] and step not in replayed["replayed"]
    again = client.jobs.get(replayed["replayed"][mine]).info()
    assert again["principal"] == "apikey:ana" and again["owner"] == mine_owner
