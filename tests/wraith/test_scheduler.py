"""The ``wraith`` actor on a real Ray cluster: state in ENGRAM survives a restart; runs go to CORTEX."""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading
import time
import uuid
from types import SimpleNamespace
from typing import ClassVar

import pytest
import ray

from mnemos.client import Client
from mnemos.config import load_settings
from mnemos.engram import Engram
from mnemos.errors import UnavailableError, ValidationError
from mnemos.wraith.schedule import entries_from_settings, read_state
from mnemos.wraith.scheduler import WraithScheduler, submit_task
from mnemos.wraith.tasks import _configured_repo, gitops_sync, task_options

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


def test_a_task_whose_last_run_has_not_ended_is_skipped(ray_cluster, settings) -> None:
    """Runs of one task never overlap: a slot or a run by hand that comes while the last job is
    queued or running is skipped and says so; once it has ended, the next one runs."""
    engram = Engram.from_settings(settings)
    client = Client(settings, connected=True)
    running = client.jobs.submit("mnemos.cortex.testing:sleep", 60, queue="wraith")
    actor = _actor(settings, engram)
    try:
        ray.get(actor.tick.remote(time.time()))  # the first tick: the tasks' state exists
        state = read_state(engram)
        state["backup"]["lastJob"] = running.id
        engram.write_json("wraith/state.json", state)

        result = ray.get(actor.run_now.remote("backup"))
        assert result["status"].startswith("skipped") and running.id in result["status"], result
        assert result["job"] == running.id and read_state(engram)["backup"]["lastJob"] == running.id
        later = state["backup"]["nextRun"] + 1  # a scheduled slot is skipped the same way
        ray.get(actor.tick.remote(later))
        after = read_state(engram)["backup"]
        assert after["lastJob"] == running.id and after["lastSkipped"] == later and "still" in after["skipped"]
        others = [s["lastJob"] for s in read_state(engram).values() if s.get("lastJob") not in (None, running.id)]
        client.jobs.wait(others, timeout=300)  # the other tasks due by then ran: CORTEX idle for the next test

        running.cancel()
        result = ray.get(actor.run_now.remote("backup"))
        assert result["status"] == "submitted" and result["job"] != running.id
        assert client.jobs.get(result["job"]).wait(timeout=120)["status"] == "succeeded"
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


_TOKEN = "ghp_s3cr3tT0ken"


def _journal_bytes(engram: Engram) -> bytes:
    """Every CORTEX journal document, with the pickled job payloads they carry decoded."""
    out = b""
    for key in engram.list("journal"):
        raw = engram.read_bytes(key)
        out += raw + b"".join(base64.b64decode(p) for p in re.findall(rb'"payload":"([A-Za-z0-9+/=]+)"', raw))
    return out


def test_gitops_credentials_stay_out_of_the_cortex_journal(ray_cluster, tmp_path) -> None:
    repo = f"https://ops:{_TOKEN}@127.0.0.1:1/org/ops.git"
    settings = load_settings(engram={"uri": str(tmp_path / "engram")}, wraith={"gitops": {"repo": repo, "path": "dev"}})
    client = Client(settings, connected=True)
    job = submit_task(client, "gitops-sync")
    [view] = client.jobs.wait([job], timeout=300)
    assert view["status"] == "failed"  # nothing answers on port 1; what matters is what was stored
    engram = Engram.from_settings(settings)
    journal = _journal_bytes(engram)
    assert b"gitops_sync" in journal and b"***@127.0.0.1:1/org/ops.git" in journal
    assert _TOKEN.encode() not in journal


class _AuthRecorder(http.server.BaseHTTPRequestHandler):
    """A Git HTTP server that asks for credentials and records those it gets (then has no repository)."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        auth = self.headers.get("Authorization")
        if auth:
            self.seen.append(base64.b64decode(auth.split()[1]).decode())
            self.send_response(404)
        else:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="ops"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_worker_fetches_with_the_credentials_of_its_own_settings(tmp_path, monkeypatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        repo = f"http://ops:{_TOKEN}@127.0.0.1:{server.server_port}/org/ops.git"
        monkeypatch.setenv("MNEMOS_WRAITH__GITOPS__REPO", repo)
        options = task_options(load_settings(), "gitops-sync")
        assert _TOKEN not in options["repo"]  # what travels in the job
        engram_uri = str(tmp_path / "engram")
        with pytest.raises(UnavailableError):  # the server has no repository behind its door
            gitops_sync(engram_uri, {}, options)
        assert _AuthRecorder.seen and set(_AuthRecorder.seen) == {f"ops:{_TOKEN}"}
        recorded = Engram(engram_uri).read_json("wraith/runs/gitops-sync.json")
        assert recorded["status"] == "failed" and _TOKEN not in json.dumps(recorded)

        monkeypatch.delenv("MNEMOS_WRAITH__GITOPS__REPO")  # a worker without the configured repository
        with pytest.raises(ValidationError, match="credentials were left out of the job") as exc:
            gitops_sync(engram_uri, {}, options)
        assert exc.value.param == "options.repo"

        # A token in the URL's query (as some Git hosts take one) stays out of the job as well.
        repo = f"http://127.0.0.1:{server.server_port}/org/ops.git?access_token={_TOKEN}"
        monkeypatch.setenv("MNEMOS_WRAITH__GITOPS__REPO", repo)
        options = task_options(load_settings(), "gitops-sync")
        assert _TOKEN not in options["repo"] and options["repo"].endswith("/org/ops.git?access_token=***")
        assert _configured_repo(options["repo"]) == repo  # the worker fetches with its own settings' URL
    finally:
        server.shutdown()
        server.server_close()
