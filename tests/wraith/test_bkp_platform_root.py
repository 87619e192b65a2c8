"""A WRAITH job runs on its own platform's root only. The backup that takes a snapshot is running in
it, so a platform restored from it runs that job again; it named the old root, and backed that root
up (a lost root: an empty snapshot that became `latest`) into the old backup store."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import ray

from mnemos.client import Client
from mnemos.cortex.api import JobFailedError
from mnemos.engram import Engram
from mnemos.errors import ConflictError, UnavailableError
from mnemos.wraith.backup import list_snapshots
from mnemos.wraith.scheduler import WraithScheduler
from mnemos.wraith.tasks import backup, public_options


def _actor(settings, engram: Engram):
    name = f"wraith-test-{uuid.uuid4().hex[:6]}"  # not the platform's `wraith`
    return name, WraithScheduler.options(name=name, namespace="mnemos").remote(settings, engram)


def test_a_job_for_the_root_a_platform_was_restored_from_does_nothing(ray_cluster, settings, tmp_path: Path) -> None:
    restored = Engram.from_settings(settings)  # this platform's root, restored from `old`
    restored.write_json("registry/Model/a/00000001.json", {"a": 1})
    old = Engram(str(tmp_path / "old" / "engram"))  # the lost root: what is left of it
    old.write_json("lineage/00000000000000000001-00000000.json", [])
    name, actor = _actor(settings, restored)
    try:
        assert ray.get(actor.root.remote()) == restored.uri

        with pytest.raises(ConflictError, match=f"this job is for the ENGRAM root {old.uri}, not this platform's"):
            backup(old.uri, None, {"wraithActor": name})  # as the journal of the snapshot holds it
        assert not Engram(str(tmp_path / "old" / "backups")).exists("snapshots")  # no snapshot of the lost root
        assert not old.exists("wraith/runs/backup.json")

        report = backup(restored.uri, None, {"wraithActor": name})  # this platform's own: it runs
        assert report["documents"] >= 1

        # As CORTEX runs it: the job, submitted with the old root, fails with that reason.
        client = Client(settings, connected=True)
        job = client.jobs.submit("mnemos.wraith.tasks:backup", old.uri, public_options(old.storage_options),
                                 {"wraithActor": name}, queue="wraith", max_attempts=1)  # fmt: skip
        with pytest.raises(JobFailedError, match="not this platform's root"):
            job.result(timeout=120)
    finally:
        ray.kill(actor, no_restart=True)
    with pytest.raises(UnavailableError, match="its WRAITH actor, which says which root that is, did not answer"):
        backup(restored.uri, None, {"wraithActor": name})  # no actor to ask: nothing is done
    assert len(list_snapshots(Engram(str(Path(restored.uri).parent / "backups")))) == 1


def test_the_actor_names_itself_in_its_jobs(ray_cluster, settings, tmp_path: Path) -> None:
    """Its jobs are checked against its root: an actor whose root is not the one its jobs are for
    (as a job restored from a snapshot is) sees them refused."""
    client = Client(settings, connected=True)
    name, actor = _actor(settings, Engram(str(tmp_path / "another")))  # submits for settings' root, says another
    try:
        result = ray.get(actor.run_now.remote("backup"))
        with pytest.raises(JobFailedError, match="not this platform's root"):
            client.jobs.get(result["job"]).result(timeout=120)
    finally:
        ray.kill(actor, no_restart=True)
    assert not list_snapshots(Engram(str(Path(Engram.from_settings(settings).uri).parent / "backups")))
