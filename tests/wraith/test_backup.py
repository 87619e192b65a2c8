"""Backup, wipe the ENGRAM root, restore: registry, refs and lineage come back identical."""

from __future__ import annotations

import importlib
import json
import time

import pytest
from tests_support import model_doc

from mnemos.engram import Engram
from mnemos.errors import ConflictError, NotFoundError, ValidationError
from mnemos.genome import Registry, parse_resource
from mnemos.trace.lineage import record
from mnemos.wraith._store import all_keys
from mnemos.wraith.backup import backup, default_destination, list_snapshots, prune_snapshots, restore
from mnemos.wraith.compaction import compact_log


def _populate(engram: Engram) -> None:
    registry = Registry(engram)
    registry.apply(parse_resource(model_doc("alpha")))
    registry.apply(parse_resource(model_doc("alpha", replicas=2)))  # a second generation
    registry.apply(parse_resource(model_doc("beta")))
    registry.delete("Model", "beta")
    weights = engram.put(b"weights" * 100)
    manifest = engram.put(json.dumps({"files": {"model.safetensors": weights}}).encode())
    engram.set_ref("models/alpha/1", manifest)
    engram.set_ref("runs/r1/results", engram.put(b'{"text": "hello"}\n'))
    for i in range(4):
        record(engram, f"run:r{i}", "execution", step=i)
    compact_log(engram, "lineage", now=time.time() + 3600, min_age=0)  # a compacted segment + manifest
    record(engram, "run:r9", "execution")
    engram.append("journal/cortex", [{"job": "j1", "state": "done"}])


def _contents(engram: Engram) -> dict[str, bytes]:
    """Every key of the root but blobs, with its bytes (refs included as stored)."""
    return {k: engram.read_bytes(k) for k in all_keys(engram) if not k.startswith(("blobs/", "snapshots/"))}


def _wipe(engram: Engram) -> None:
    for prefix in {k.split("/", 1)[0] for k in all_keys(engram)}:
        engram.delete_prefix(prefix)
    assert all_keys(engram) == []


def test_backup_wipe_restore_is_identical(engram: Engram) -> None:
    _populate(engram)
    before = _contents(engram)
    refs = engram.refs()
    registry_before = [r.dump() for r in Registry(engram).list()]
    history_before = [r.dump() for r in Registry(engram).history("Model", "alpha")]
    lineage_before = list(engram.read_log("lineage"))
    assert any(k.startswith("registry/") for k in before) and any(k.startswith("lineage/") for k in before)

    report = backup(engram)
    assert report.destination == default_destination(engram.uri)
    dest = Engram(report.destination, engram.storage_options)
    assert list_snapshots(dest) == [report.snapshot]
    _wipe(engram)

    restored = restore(dest, report.snapshot, engram)

    assert restored.refs == len(refs)
    assert _contents(engram) == before  # listings and bytes: registry, refs, lineage, journal
    assert engram.refs() == refs
    assert [r.dump() for r in Registry(engram).list()] == registry_before
    assert [r.dump() for r in Registry(engram).history("Model", "alpha")] == history_before
    assert list(engram.read_log("lineage")) == lineage_before
    manifest = json.loads(engram.get(refs["models/alpha/1"]))
    assert engram.get(manifest["files"]["model.safetensors"]) == b"weights" * 100  # reached blobs came too


def test_restore_refuses_a_root_that_is_not_empty(local_engram: Engram) -> None:
    _populate(local_engram)
    report = backup(local_engram)
    dest = Engram(report.destination)
    with pytest.raises(ConflictError, match="not empty"):
        restore(dest, "latest", local_engram)
    assert restore(dest, "latest", local_engram, force=True).snapshot == report.snapshot
    with pytest.raises(NotFoundError, match="snapshot 'nope' not found"):
        restore(dest, "nope", local_engram, force=True)


def test_snapshots_share_blobs_and_old_ones_are_pruned(local_engram: Engram, tmp_path) -> None:
    _populate(local_engram)
    dest_uri = str(tmp_path / "elsewhere")
    first = backup(local_engram, dest_uri, now=time.time() - 10 * 86400)
    second = backup(local_engram, dest_uri)
    assert second.copied_blobs == 0  # unchanged blobs are not copied again
    dest = Engram(dest_uri)
    assert list_snapshots(dest) == [first.snapshot, second.snapshot]
    assert prune_snapshots(dest, keep_days=5) == [first.snapshot]
    assert list_snapshots(dest) == [second.snapshot]
    assert prune_snapshots(dest, keep_days=0.000001) == []  # the newest always stays
    fresh = Engram(str(tmp_path / "fresh"))
    restore(dest, "latest", fresh)
    assert fresh.refs() == local_engram.refs()


def test_default_destination() -> None:
    assert default_destination("/data/mnemos/engram") == "/data/mnemos/backups"
    assert default_destination("s3://bucket/mnemos/root") == "s3://bucket/mnemos/backups"
    assert default_destination("s3://bucket/root") == "s3://bucket/backups"
    with pytest.raises(ValidationError, match="engram.backups.destination"):
        default_destination("s3://bucket")


def test_forced_restore_brings_back_the_snapshot_state_of_its_resources(local_engram: Engram) -> None:
    """Deleted since: live again; changed since: the snapshot's spec; both as new registry entries."""
    _populate(local_engram)
    registry = Registry(local_engram)
    registry.apply(parse_resource(model_doc("gamma")))
    report = backup(local_engram)
    registry.delete("Model", "alpha")  # generation 2 deleted after the snapshot
    registry.apply(parse_resource(model_doc("gamma", replicas=3)))  # changed after the snapshot
    registry.apply(parse_resource(model_doc("beta")))  # deleted in the snapshot, applied again since
    registry.apply(parse_resource(model_doc("delta")))  # created after the snapshot: stays
    before = set(all_keys(local_engram))

    restored = restore(Engram(report.destination), "latest", local_engram, force=True)
    assert set(all_keys(local_engram)) >= before  # history is append-only: nothing removed
    alpha = registry.get("Model", "alpha")
    assert (alpha.generation, alpha.spec_dump()) == (3, registry.get("Model", "alpha", 2).spec_dump())
    gamma = registry.get("Model", "gamma")
    assert (gamma.generation, gamma.spec_dump()) == (3, registry.get("Model", "gamma", 1).spec_dump())
    with pytest.raises(NotFoundError):
        registry.get("Model", "beta")
    assert registry.get("Model", "delta").generation == 1
    assert restored.reverted == [
        "model/alpha: generation 3 (the snapshot's generation 2)",
        "model/beta: deleted (as in the snapshot)",
        "model/gamma: generation 3 (the snapshot's generation 1)",
    ]
    again = restore(Engram(report.destination), "latest", local_engram, force=True)
    assert again.reverted == []  # the root now holds the snapshot's state


def test_an_older_stores_single_deleted_marker_counts_in_a_snapshot_and_in_the_registry(local_engram: Engram) -> None:
    """Stores of older releases mark a deletion with one ``deleted.json`` holding the generation.
    The registry and a forced restore read it alike: deleted at the snapshot, applied again
    since, the restore deletes it again (it used to leave such a resource as it was)."""
    registry = Registry(local_engram)
    registry.apply(parse_resource(model_doc("omega")))
    local_engram.write_json("registry/Model/omega/deleted.json", {"generation": 1})  # the older marker
    with pytest.raises(NotFoundError):
        registry.get("Model", "omega")
    report = backup(local_engram)
    registry.apply(parse_resource(model_doc("omega", replicas=2)))  # applied again since
    assert registry.get("Model", "omega").generation == 2
    restored = restore(Engram(report.destination), "latest", local_engram, force=True)
    assert restored.reverted == ["model/omega: deleted (as in the snapshot)"]
    with pytest.raises(NotFoundError):
        registry.get("Model", "omega")


def test_a_prune_beside_a_backup_never_leaves_its_snapshot_without_a_blob(
    local_engram: Engram, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two backups at once (a scheduled one and a `wraith run backup --local`): the second finds
    a blob stored already and skips it, while the first's prune deletes it, since only the pruned
    snapshot named it. A prune that sees a snapshot being written deletes no blob; one that began
    before that backup did is repaired by the backup, which checks its blobs once named."""
    _populate(local_engram)
    dest_uri = str(tmp_path / "store")
    old = backup(local_engram, dest_uri, now=time.time() - 10 * 86400)
    model = local_engram.get_ref("models/alpha/1")
    local_engram.delete_ref("models/alpha/1")  # a snapshot without the model's blobs, then it is back
    backup(local_engram, dest_uri, now=time.time() - 86400)
    local_engram.set_ref("models/alpha/1", model)
    dest = Engram(dest_uri)
    weights = sorted(set(dest.read_json(f"snapshots/{old.snapshot}/manifest.json")["blobs"])
                     - set(dest.read_json(f"snapshots/{list_snapshots(dest)[1]}/manifest.json")["blobs"]))
    assert len(weights) == 2  # the model's manifest and weights: only the old snapshot names them

    # A backup being written (its marker, no manifest yet): the prune deletes the old snapshot only.
    dest.write_json("snapshots/20991231T000000Z-abcdef/started.json", {"started": time.time()})
    assert prune_snapshots(dest, keep_days=5, min_blob_age=0) == [old.snapshot]
    assert all(dest.has(d) for d in weights)  # (deleted before: the blobs only that snapshot named)
    dest.delete("snapshots/20991231T000000Z-abcdef/started.json")

    # A prune that began before this backup deletes a blob the backup found stored and skipped.
    module = importlib.import_module("mnemos.wraith.backup")  # (the package's `backup` is the function)
    copy = module._copy_blob

    pruned: list[str] = []

    def copy_then_pruned(source: Engram, target: Engram, digest: str) -> bool:
        copied = copy(source, target, digest)
        if digest == weights[0] and not pruned:
            target.delete_blob(digest)
            pruned.append(digest)
        return copied

    monkeypatch.setattr(module, "_copy_blob", copy_then_pruned)
    report = backup(local_engram, dest_uri)
    monkeypatch.setattr(module, "_copy_blob", copy)
    assert dest.has(weights[0]) and report.copied_blobs >= 1
    assert not [k for k in dest.list("snapshots") if k.endswith("started.json")]  # its marker went
    fresh = Engram(str(tmp_path / "fresh"))
    restore(dest, report.snapshot, fresh)
    assert fresh.refs() == local_engram.refs()
