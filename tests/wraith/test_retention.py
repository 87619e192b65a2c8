"""Retention never removes a blob something reaches; it removes old ones nothing reaches."""

from __future__ import annotations

import json
import os
import time

import pytest
from tests_support import model_doc

from mnemos.engram import Engram
from mnemos.errors import ValidationError
from mnemos.genome import Registry, parse_resource
from mnemos.trace.lineage import record
from mnemos.wraith.retention import reachable_blobs, retain

DAY = 86400.0


def _populate(engram: Engram) -> dict[str, str]:
    """Blobs reached in every way retention knows, and two that nothing reaches."""
    b = {
        name: engram.put(f"{name} {os.urandom(4).hex()}".encode()) for name in ("ref", "weights", "tok", "job", "gone")
    }
    b["by-registry"] = engram.put(b"weights named by a Model's artifact.sha256")
    b["by-lineage"] = engram.put(b"an artifact only lineage mentions")
    b["nested"] = engram.put(b"reached through two manifests")
    inner = engram.put(json.dumps({"files": {"data.bin": b["nested"]}}).encode())
    b["inner"] = inner
    manifest = engram.put(
        json.dumps({"files": {"model.safetensors": b["weights"], "tok.json": b["tok"], "x": inner}}).encode()
    )
    b["manifest"] = manifest
    b["binary"] = engram.put(b"\x00\x01binary sha256:" + b"a" * 64)  # binary: not scanned for digests
    engram.set_ref("data/plain", b["ref"])
    engram.set_ref("models/m/1", manifest)
    engram.append("journal/cortex", [{"job": "j1", "result": b["job"]}])
    Registry(engram).apply(parse_resource(model_doc("m", artifact={"uri": "engram://x", "sha256": b["by-registry"]})))
    record(engram, f"artifact:{b['by-lineage']}", "artifact", size=1)
    return b


def test_reachability_follows_refs_documents_and_manifests(engram: Engram) -> None:
    b = _populate(engram)
    reached = reachable_blobs(engram)
    for name in ("ref", "weights", "tok", "job", "by-registry", "by-lineage", "nested", "inner", "manifest"):
        assert b[name] in reached, name
    assert b["gone"] not in reached and b["binary"] not in reached


def test_retention_removes_old_unreferenced_and_keeps_reachable(engram: Engram) -> None:
    b = _populate(engram)
    later = time.time() + 40 * DAY  # every blob is older than 30 days by then

    report = retain(engram, 30, now=later)

    assert sorted(report.deleted) == sorted([b["gone"], b["binary"]])
    for name, digest in b.items():
        assert engram.has(digest) == (name not in ("gone", "binary")), name
        if name not in ("gone", "binary"):
            engram.get(digest)  # still there and intact
    assert retain(engram, 30, now=later).deleted == []  # nothing more to take


def test_retention_keeps_young_unreferenced_blobs(engram: Engram) -> None:
    b = _populate(engram)
    report = retain(engram, 30)  # now: nothing is 30 days old
    assert report.deleted == [] and report.kept_young == 2
    assert engram.has(b["gone"])


def test_retention_age_is_the_blob_mtime(local_engram: Engram) -> None:
    old = local_engram.put(b"old and unreferenced")
    young = local_engram.put(b"young and unreferenced")
    kept = local_engram.put(b"old but referenced")
    local_engram.set_ref("keep", kept)
    past = time.time() - 31 * DAY
    for digest in (old, kept):
        os.utime(local_engram.path(local_engram.blob_key(digest)), (past, past))
    report = retain(local_engram, 30)
    assert report.deleted == [old]
    assert not local_engram.has(old) and local_engram.has(young) and local_engram.has(kept)


def test_dry_run_and_bad_days(local_engram: Engram) -> None:
    digest = local_engram.put(b"unreferenced")
    report = retain(local_engram, 1, now=time.time() + 2 * DAY, dry_run=True)
    assert report.deleted == [digest] and local_engram.has(digest)
    with pytest.raises(ValidationError, match="retentionDays"):
        retain(local_engram, 0)


def test_the_task_records_no_digest_it_deleted(local_engram: Engram) -> None:
    """A run's record must not mention the digests it removed (or a dry run would keep them forever)."""
    from mnemos.wraith.tasks import retention

    digest = local_engram.put(b"garbage")
    later = time.time() + 2 * DAY
    dry = retention(local_engram.uri, None, {"retentionDays": 1, "dryRun": True, "now": later})
    assert dry["deleted"] == [digest]
    assert local_engram.read_json("wraith/runs/retention.json")["report"]["deletedCount"] == 1
    real = retention(local_engram.uri, None, {"retentionDays": 1, "now": later})
    assert real["deleted"] == [digest] and not local_engram.has(digest)


def test_the_task_prunes_expired_credentials_and_keeps_every_name_claimed(local_engram: Engram) -> None:
    """Every console sign-in writes a token record, and nothing removed them: they only grew, and each
    mint's name check read them all. Retention drops those expired over a minute ago (and revocation
    markers of expired credentials), except the newest of a name no API key holds: that record is what
    keeps another team from minting the name and becoming the principal that owns its jobs and runs."""
    from mnemos.config import load_settings
    from mnemos.soul.http import check_name_taken
    from mnemos.soul.identity import Principal
    from mnemos.soul.store import IdentityStore
    from mnemos.wraith.tasks import retention

    store = IdentityStore.from_settings(load_settings(engram={"uri": local_engram.uri}), local_engram)
    key = store.create_api_key("alice", "developer", team="red")
    sessions = [store.create_token("alice", "developer", ttl=60, team="red") for _ in range(3)]
    store.revoke(sessions[0].id)
    jwt_only = [store.create_token("bob", "developer", ttl=60, team="red") for _ in range(2)]
    live = store.create_token("carol", "developer", ttl=10 * DAY, team="red")
    later = time.time() + 2 * 3600

    dry = retention(local_engram.uri, None, {"retentionDays": 1, "dryRun": True, "now": later})
    assert dry["credentialsPruned"] == 0 and len(store.list(include_inactive=True)) == 7
    report = retention(local_engram.uri, None, {"retentionDays": 1, "now": later})
    assert report["credentialsPruned"] == 5  # alice's 3 sessions (a key holds her name), bob's older one, 1 marker
    left = {doc["id"] for doc in store.list(include_inactive=True)}
    # bob's newest (his two tokens are stamped in whole seconds: made within one, either is the newest)
    assert left - {t.id for t in jwt_only} == {key.id, live.id} and len(left) == 3, left
    assert local_engram.read_json("wraith/runs/retention.json")["report"]["credentialsPruned"] == 5
    blue_admin = Principal(subject="admin-blue", role="admin", kind="apikey", team="blue")
    for name in ("alice", "bob"):  # still one principal each: another team cannot mint them
        with pytest.raises(Exception, match="is a principal outside your team"):
            check_name_taken(store, blue_admin, name, "blue")
