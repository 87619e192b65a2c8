"""Small reads over a whole ENGRAM root that ``Engram`` does not offer (yet)."""

from __future__ import annotations

from mnemos.engram import Engram


def root_path(engram: Engram) -> str:
    """The backend path of the root (``Engram.path`` of a key, minus the key)."""
    return engram.path("_")[:-2]


def all_keys(engram: Engram) -> list[str]:
    """Every key under the root, sorted, temporary files excluded."""
    root = root_path(engram)
    try:
        paths = engram.fs.find(root)
    except FileNotFoundError:
        return []
    return sorted(p[len(root) + 1 :] for p in paths if not p.rsplit("/", 1)[-1].startswith((".tmp-", ".part-")))
