"""A key with a name longer than the filesystem allows (``ENAMETOOLONG``) reads as absent: nothing of
that name can have been written, so it is a ``NotFoundError`` (a 404), never an ``OSError`` (a 500)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnemos.engram import Engram
from mnemos.errors import NotFoundError


@pytest.mark.parametrize("length", [256, 300, 4000])
def test_reading_a_key_whose_name_is_too_long_for_the_filesystem_is_not_found(tmp_path: Path, length: int) -> None:
    engram = Engram(str(tmp_path))
    engram.write_json("runs/present/state.json", {})  # its folder exists: the too-long name is looked up
    key = f"runs/{'a' * length}/state.json"
    with pytest.raises(NotFoundError, match="not found"):
        engram.read_json(key)
    assert not engram.exists(key) and engram.list(key.rsplit("/", 1)[0]) == []
    assert engram.read_json("runs/present/state.json") == {}


def test_other_read_failures_still_raise(tmp_path: Path) -> None:
    engram = Engram(str(tmp_path))
    engram.write_json("runs/file", {})
    with pytest.raises(OSError) as failed:  # a folder where a file is: not an absence to hide
        engram.read_bytes("runs")
    assert not isinstance(failed.value, FileNotFoundError)


@pytest.mark.parametrize("length", [256, 4000])
def test_deleting_a_key_whose_name_is_too_long_deletes_nothing_and_does_not_fail(tmp_path: Path, length: int) -> None:
    engram = Engram(str(tmp_path))
    engram.write_json("runs/present/state.json", {})  # its folder exists: the too-long name is looked up
    digest = engram.put(b"kept")
    engram.set_ref("runs/present/out", digest)
    engram.delete(f"runs/{'a' * length}/state.json")
    engram.delete_ref(f"runs/{'a' * length}/out")
    assert engram.get_ref("runs/present/out") == digest and engram.has(digest)
    assert engram.read_json("runs/present/state.json") == {}
    with pytest.raises(OSError) as failed:  # a folder where a file is: not an absence to hide
        engram.delete("runs")
    assert not isinstance(failed.value, FileNotFoundError)
