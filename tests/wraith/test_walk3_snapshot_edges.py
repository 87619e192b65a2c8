"""A manifest whose creation time is no time a backup writes (JSON's 1e400, NaN, true) is a damaged
snapshot: it once passed the check, and `mnemos wraith snapshots` then ended in a traceback
(OverflowError) for every snapshot of the store; an unknown snapshot id in an error is cut short."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests_support import model_doc
from tests_support import run_cli as run

import mnemos.cli as cli
from mnemos.cli import gitops as gitops_cli
from mnemos.cli import wraith as wraith_cli
from mnemos.engram import Engram
from mnemos.errors import IntegrityError, NotFoundError
from mnemos.genome import Registry, parse_resource
from mnemos.wraith.backup import backup, list_snapshots, prune_snapshots, read_manifest, restore

if not any(c.name == "sync" or getattr(c.callback, "__name__", "") == "sync" for c in cli.app.registered_commands):
    gitops_cli.register(cli.app)
if not any(g.name == "wraith" for g in cli.app.registered_groups):
    cli.app.add_typer(wraith_cli.app, name="wraith")


@pytest.mark.parametrize("created", ["1e400", "-1e400", "NaN", "true", "-5", "1e300"])
def test_a_manifest_whose_creation_time_is_no_time_is_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, created: str
) -> None:
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", str(tmp_path / "engram"))
    monkeypatch.delenv("MNEMOS_CONFIG", raising=False)
    engram = Engram(str(tmp_path / "engram"))
    Registry(engram).apply(parse_resource(model_doc("alpha")))
    good = backup(engram)
    dest = Engram(good.destination)
    bad = "20991231T000000Z-000bad"
    manifest = f'{{"id": "{bad}", "created": {created}, "documents": {{}}, "refs": {{}}, "blobs": []}}'
    dest.write_bytes(f"snapshots/{bad}/manifest.json", manifest.encode())

    out, _ = run(capsys, "wraith", "snapshots")  # it ended in a traceback: the others did not list either
    assert good.snapshot in out and f"{bad}  damaged" in out, out
    with pytest.raises(IntegrityError, match="its id or creation time is not the snapshot's"):
        restore(dest, "latest", Engram(str(tmp_path / "restored")))
    assert prune_snapshots(dest, keep_days=1) == []  # by the time in its id (2099): kept, as the newest
    assert list_snapshots(dest) == [good.snapshot, bad]


def test_an_unknown_snapshot_id_is_shown_cut_short(local_engram: Engram) -> None:
    dest = Engram(backup(local_engram).destination)
    with pytest.raises(NotFoundError) as unknown:
        read_manifest(dest, "é" * 5000)
    assert len(unknown.value.message) < 600 and "(5000 characters)" in unknown.value.message


@pytest.mark.parametrize("foreign", ["prod-copy", "é", "zz"])
def test_latest_is_the_newest_backup_not_a_folder_copied_beside_them(local_engram: Engram, foreign: str) -> None:
    """A folder named by hand sorts after every backup's id: `latest` named it (damaged: exit 5)."""
    Registry(local_engram).apply(parse_resource(model_doc("alpha")))
    good = backup(local_engram)
    dest = Engram(good.destination)
    dest.fs.pipe_file(f"{dest.path('snapshots')}/{foreign}/manifest.json", b"{}")  # as a `cp -r` would
    assert list_snapshots(dest)[-1] == foreign
    assert read_manifest(dest, "latest")["id"] == good.snapshot
    assert restore(dest, "latest", Engram(str(local_engram.uri) + "-restored")).snapshot == good.snapshot
