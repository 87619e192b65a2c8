"""Paths and names the CLI takes for stores, checked before anything is written: a file given as a
store folder (it listed no snapshots, exit 0, or was "not reachable", exit 10), ``file://`` to a
folder that does not exist (no snapshots, exit 0), and ``model init-tiny`` with ``--store ""`` (the
model written, nothing stored, exit 0) or a seed torch cannot take (a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnemos.cli import main


@pytest.fixture(autouse=True)
def _local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN", "MNEMOS_ENGRAM__URI",
                 "MNEMOS_ENGRAM__BACKUPS__DESTINATION"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))


def _line(capsys: pytest.CaptureFixture[str], args: list[str], code: int) -> str:
    with pytest.raises(SystemExit) as done:
        main(args)
    out, err = capsys.readouterr()
    assert done.value.code == code, err
    assert "Traceback" not in out + err, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: "), line
    return line


@pytest.mark.parametrize("args", [["wraith", "snapshots", "--from"], ["restore", "latest", "--from"],
                                  ["restore", "latest", "--to"]])  # fmt: skip
def test_a_file_is_no_store_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    file = tmp_path / "notes.yaml"
    file.write_text("a: 1\n")
    line = _line(capsys, [*args, str(file)], code=2)
    assert line == f"error: {args[-1]} {file}: is a file, not a folder: give a folder or an object store URI"


def test_a_backup_destination_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    file = tmp_path / "notes.yaml"
    file.write_text("a: 1\n")
    monkeypatch.setenv("MNEMOS_ENGRAM__BACKUPS__DESTINATION", str(file))
    line = _line(capsys, ["wraith", "run", "backup", "--local"], code=2)
    assert line.startswith(f"error: engram.backups.destination (MNEMOS_ENGRAM__BACKUPS__DESTINATION) {file}: is a file")
    assert file.read_text() == "a: 1\n"


def test_snapshots_from_a_file_url_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _line(capsys, ["wraith", "snapshots", "--from", f"file://{tmp_path}/typo"], code=3)
    assert "no such folder" in line


@pytest.mark.parametrize("option", [["--store", ""], ["--store", "a/../b"], ["--seed", str(2**64)]])
def test_init_tiny_refuses_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          option: list[str]) -> None:  # fmt: skip
    line = _line(capsys, ["model", "init-tiny", str(tmp_path / "tiny"), *option], code=2)
    assert option[0] in line, line
    assert not (tmp_path / "tiny").exists()
