"""A damaged backup (a truncated, altered or missing document or blob, a manifest that is not one a
backup writes) is refused with one error naming what is wrong, before a restore writes anything; a
damaged snapshot neither breaks the listing nor the prune; snapshots kept in the root itself never
make a prune delete the root's blobs."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests_support import model_doc
from tests_support import run_cli as run

import mnemos.cli as cli
from mnemos.cli import gitops as gitops_cli
from mnemos.cli import wraith as wraith_cli
from mnemos.engram import Engram
from mnemos.errors import ConflictError, IntegrityError, ValidationError
from mnemos.genome import Registry, parse_resource
from mnemos.wraith._store import all_keys
from mnemos.wraith.backup import backup, list_snapshots, prune_snapshots, restore

if not any(c.name == "sync" or getattr(c.callback, "__name__", "") == "sync" for c in cli.app.registered_commands):
    gitops_cli.register(cli.app)
if not any(g.name == "wraith" for g in cli.app.registered_groups):
    cli.app.add_typer(wraith_cli.app, name="wraith")


def _populate(engram: Engram) -> None:
    Registry(engram).apply(parse_resource(model_doc("alpha")))
    weights = engram.put(b"weights" * 100)
    engram.set_ref("models/alpha/1", engram.put(json.dumps({"files": {"model.safetensors": weights}}).encode()))
    engram.append("journal/cortex", [{"job": "j1", "state": "done"}])


def _manifest_key(dest: Engram) -> str:
    return f"snapshots/{list_snapshots(dest)[-1]}/manifest.json"


def _overwrite_blob(dest: Engram, digest: str, data: bytes) -> None:
    dest.fs.pipe_file(dest.path(dest.blob_key(digest)), data)  # behind ENGRAM's back, as a disk or an editor would


def _truncate_document(dest: Engram) -> None:
    manifest = dest.read_json(_manifest_key(dest))
    digest = manifest["documents"][sorted(k for k in manifest["documents"] if k.startswith("registry/"))[0]]
    _overwrite_blob(dest, digest, dest.get(digest)[:10])


def _lose_document(dest: Engram) -> None:
    documents = dest.read_json(_manifest_key(dest))["documents"]
    dest.delete_blob(documents[sorted(k for k in documents if k.startswith("journal/"))[0]])


def _alter_blob(dest: Engram) -> None:
    manifest = dest.read_json(_manifest_key(dest))
    digest = next(d for d in manifest["blobs"] if d not in manifest["documents"].values())
    _overwrite_blob(dest, digest, b"not the weights")


def _lose_blob(dest: Engram) -> None:
    manifest = dest.read_json(_manifest_key(dest))
    dest.delete_blob(next(d for d in manifest["blobs"] if d not in manifest["documents"].values()))


def _edit_manifest(edit: Callable[[dict], object]) -> Callable[[Engram], None]:
    def damage(dest: Engram) -> None:
        manifest = dest.read_json(_manifest_key(dest))
        edited = edit(manifest)
        dest.write_bytes(_manifest_key(dest), json.dumps(manifest if edited is None else edited).encode())

    return damage


def _truncate_manifest(dest: Engram) -> None:
    dest.write_bytes(_manifest_key(dest), dest.read_bytes(_manifest_key(dest))[:120])


def _document_under(prefix: str) -> Callable[[Engram], None]:
    def edit(manifest: dict) -> None:
        manifest["documents"][f"{prefix}/sha256/aa/" + "a" * 64] = next(iter(manifest["documents"].values()))

    return _edit_manifest(edit)


DAMAGES = {
    "a document truncated": (_truncate_document, "is altered"),
    "a document missing": (_lose_document, "is missing"),
    "a blob altered": (_alter_blob, "is altered"),
    "a blob missing": (_lose_blob, "is missing"),
    "the manifest truncated": (_truncate_manifest, "its manifest is not JSON"),
    "the manifest without documents": (_edit_manifest(lambda m: m.pop("documents")), "lacks documents"),
    "the manifest a list": (_edit_manifest(lambda m: [m]), "not an object"),
    "a document key under blobs/": (_document_under("blobs"), "is not a document"),
    "a document key under refs/": (_document_under("refs"), "is not a document"),
    "a ref to a blob it lacks": (_edit_manifest(lambda m: m["refs"].update(x="sha256:" + "b" * 64)), "not among"),
    "a digest that is not one": (_edit_manifest(lambda m: m["documents"].update(x="nothex")), "not a sha256 digest"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_snapshot_restores_nothing(local_engram: Engram, tmp_path: Path, damage: str) -> None:
    _populate(local_engram)
    report = backup(local_engram, str(tmp_path / "backups"))
    dest = Engram(report.destination)
    how, message = DAMAGES[damage]
    how(dest)
    target = Engram(str(tmp_path / "restored"))

    with pytest.raises(IntegrityError, match=f"snapshot {report.snapshot} at .* is damaged: .*{message}") as caught:
        restore(dest, "latest", target)

    assert "restore another snapshot" in caught.value.message
    assert [k for k in all_keys(target) if not k.startswith("blobs/")] == []  # no document, no ref


def test_a_damaged_document_on_s3_restores_nothing(s3_engram: Engram) -> None:
    _populate(s3_engram)
    report = backup(s3_engram)
    dest = Engram(report.destination, s3_engram.storage_options)
    _truncate_document(dest)
    target = Engram(s3_engram.uri.rsplit("/", 1)[0] + "/restored", s3_engram.storage_options)
    with pytest.raises(IntegrityError, match="is damaged: document registry/.* is altered"):
        restore(dest, report.snapshot, target)
    assert [k for k in all_keys(target) if not k.startswith("blobs/")] == []


def test_the_target_of_a_refused_restore_takes_a_good_snapshot(local_engram: Engram, tmp_path: Path) -> None:
    _populate(local_engram)
    dest_uri = str(tmp_path / "backups")
    good = backup(local_engram, dest_uri)
    bad = backup(local_engram, dest_uri)
    dest = Engram(dest_uri)
    dest.write_bytes(f"snapshots/{bad.snapshot}/manifest.json", b'{"id": "')
    target = Engram(str(tmp_path / "restored"))
    with pytest.raises(IntegrityError):
        restore(dest, bad.snapshot, target)
    assert restore(dest, good.snapshot, target).refs == 1  # not refused as "not empty"
    assert target.refs() == local_engram.refs()


def test_a_damaged_snapshot_is_listed_as_such_and_pruned_by_its_age(local_engram: Engram, tmp_path: Path) -> None:
    _populate(local_engram)
    dest_uri = str(tmp_path / "backups")
    old = backup(local_engram, dest_uri, now=time.time() - 10 * 86400)
    new = backup(local_engram, dest_uri)
    dest = Engram(dest_uri)
    dest.write_bytes(f"snapshots/{old.snapshot}/manifest.json", b'{"id": "')

    listed = {s["snapshot"]: s for s in json.loads(_snapshots(tmp_path, dest_uri))}
    assert "is damaged: its manifest is not JSON" in listed[old.snapshot]["error"]
    assert listed[new.snapshot]["documents"] == new.documents and "error" not in listed[new.snapshot]

    assert prune_snapshots(dest, keep_days=5) == [old.snapshot]  # by the time in its id
    assert list_snapshots(dest) == [new.snapshot]


def _snapshots(tmp_path: Path, dest_uri: str) -> str:
    import subprocess
    import sys

    env = {**os.environ, "MNEMOS_HOME": str(tmp_path / "home"), "MNEMOS_ENGRAM__URI": str(tmp_path / "engram")}
    done = subprocess.run([sys.executable, "-m", "mnemos", "wraith", "snapshots", "--from", dest_uri, "-o", "json"],
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout


def test_restore_of_a_damaged_snapshot_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", str(tmp_path / "engram"))
    monkeypatch.delenv("MNEMOS_CONFIG", raising=False)
    engram = Engram(str(tmp_path / "engram"))
    _populate(engram)
    report = backup(engram)
    _truncate_manifest(Engram(report.destination))
    _, err = run(capsys, "restore", "latest", "--to", str(tmp_path / "restored"), code=5)
    assert err.startswith(f"error: snapshot {report.snapshot} at ") and "its manifest is not JSON" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_snapshots_in_the_root_itself_never_prune_its_blobs(local_engram: Engram) -> None:
    """``<root>/snapshots/`` (DESIGN.md's layout): the backup store's blobs are the root's, which
    retention deletes after ``retentionDays``; a prune deleting them after a day would take a young
    blob nothing names yet (an uploaded input file before its apply)."""
    _populate(local_engram)
    staged = local_engram.put(b"an uploaded input, named by nothing yet")
    two_days_ago = time.time() - 2 * 86400
    os.utime(local_engram.path(local_engram.blob_key(staged)), (two_days_ago, two_days_ago))
    backup(local_engram, local_engram.uri, now=time.time() - 10 * 86400)

    report = backup(local_engram, f"file://{local_engram.uri}/", keep_days=5)  # the root, spelled otherwise

    assert len(report.pruned) == 1
    assert local_engram.has(staged)


def test_latest_is_the_newest_of_two_backups_within_one_second(local_engram: Engram, tmp_path: Path) -> None:
    _populate(local_engram)
    dest_uri = str(tmp_path / "backups")
    second = int(time.time()) - 60
    first = backup(local_engram, dest_uri, now=second + 0.05)
    for at in (0.1, 0.2, 0.3, 0.4, 0.5):  # (five: a random part alone orders them by chance 1 in 32)
        last = backup(local_engram, dest_uri, now=second + 0.05 + at)
    dest = Engram(dest_uri)
    assert list_snapshots(dest)[0] == first.snapshot
    assert restore(dest, "latest", Engram(str(tmp_path / "restored"))).snapshot == last.snapshot


def test_a_backup_uri_inside_the_root_is_refused(local_engram: Engram) -> None:
    """Its files would be documents of the root: every backup would copy every earlier one again
    (model weights included), and a restore would write them all back as documents."""
    _populate(local_engram)
    inside = f"{local_engram.uri}/backups"
    with pytest.raises(ValidationError, match="is inside the ENGRAM root") as caught:
        backup(local_engram, inside)
    assert caught.value.param == "engram.backups.destination"
    assert not Engram(inside).list("snapshots")


@pytest.mark.parametrize("left", ["cortex/checkpoints/09999999999999999999-ffffffff.json", "soul/apikeys/abc.json"])
def test_a_restore_refuses_a_root_holding_more_than_blobs(engram: Engram, left: str) -> None:
    """A root "emptied" of its registry, refs, journal and lineage still holds CORTEX's checkpoints
    or SOUL's records: restored beside them, a newer checkpoint of the old root is the one CORTEX
    loads, and the restored journal's jobs are gone; an API key of the old root stays valid."""
    from mnemos.cortex.checkpoint import load

    _populate(engram)
    engram.write_json("cortex/checkpoints/00000000000000000001-00000000.json", {"jobs": [], "seq": 0, "after": None})
    report = backup(engram)
    dest = Engram(report.destination, engram.storage_options)
    target = Engram(engram.uri.rstrip("/") + "-restored", engram.storage_options)
    target.write_json(left, {"jobs": [], "seq": 0, "after": "09999999999999999999-ffffffff"})

    with pytest.raises(ConflictError, match=f"is not empty \\(it has {left.split('/')[0]}/\\)"):
        restore(dest, report.snapshot, target)

    target.delete(left)
    target.put(b"a blob left there")  # blobs are content-addressed: they mix with anything
    restore(dest, report.snapshot, target)
    assert load(target, "journal/cortex").jobs.keys() == load(engram, "journal/cortex").jobs.keys()
