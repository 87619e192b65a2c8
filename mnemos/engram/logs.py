"""Segmented logs in ENGRAM: the on-store format and the reader.

A log (``journal/cortex``, ``lineage``) is a folder of segments ``<log>/<seq>.json``, each a JSON
list of records; key order is write order. WRAITH's compaction (``mnemos.wraith.compaction``)
merges runs of segments into *compacted* segments with a manifest under ``<log>/_compaction/``;
``read_log`` here reads either form and never yields a record twice nor misses one while a
compaction runs concurrently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mnemos.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from mnemos.engram.store import Engram

__all__ = ["MANIFESTS", "manifest_key", "parse_segment", "read_log", "read_manifest", "read_records", "stem"]

MANIFESTS = "_compaction"
_SEGMENT = re.compile(r"^(?P<origin>\d{20}-[0-9a-f]{8})(?:-c(?P<inv>\d{6}))?$")
_MAX_GENERATION = 999_999


def stem(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".json")


def parse_segment(key: str) -> tuple[str, int] | None:
    """``(origin seq, generation)`` of a segment key; generation 0 for an original segment."""
    match = _SEGMENT.match(stem(key))
    if match is None:
        return None
    inv = match.group("inv")
    return match.group("origin"), (_MAX_GENERATION - int(inv)) if inv else 0


def manifest_key(log: str, segment_key: str) -> str:
    return f"{log}/{MANIFESTS}/{stem(segment_key)}.json"


def read_manifest(engram: Engram, log: str, key: str) -> dict[str, Any] | None:
    """The manifest of a compacted segment, ``None`` for an original one (raises if it vanished)."""
    parsed = parse_segment(key)
    if parsed is None or parsed[1] == 0:
        return None
    return engram.read_json(manifest_key(log, key))


def read_records(engram: Engram, key: str) -> list[Any]:
    data = json.loads(engram.read_bytes(key))
    if not isinstance(data, list):
        raise ValidationError(f"segment {key} is not a JSON list of records", param="log")
    return data


def read_log(engram: Engram, log: str) -> Iterator[dict[str, Any]]:
    """Every record of ``log`` in write order, exactly once, even while a compaction runs.

    Each record has a position ``(original segment key, index)``; ``seen`` counts, per original
    segment, how many of its records were yielded. A segment that vanished between listing and
    reading (merged away) makes the reader list again and go on: records already yielded are
    recognised by their position and skipped, so nothing is yielded twice or missed.
    """
    seen: dict[str, int] = {}
    for _attempt in range(100):
        try:
            yield from _read_pass(engram, log, seen)
            return
        except NotFoundError:
            continue  # a segment or manifest was merged away: list again
    raise NotFoundError(f"log {log} kept changing while it was read; try again", param="log")


def _read_pass(engram: Engram, log: str, seen: dict[str, int]) -> Iterator[dict[str, Any]]:
    keys = engram.segments(log)
    replaced: set[str] = set()
    for key in keys:
        if key in replaced:
            continue  # a crash left it next to the compacted segment that holds its records
        manifest = read_manifest(engram, log, key)
        records = read_records(engram, key)
        if manifest is None:
            positions: list[tuple[str, int]] = [(key, len(records))]
        else:
            replaced.update(manifest["replaces"])
            positions = [(str(k), int(n)) for k, n in manifest["segments"]]
        offset = 0
        for origin, count in positions:
            done = seen.get(origin, 0)
            for index in range(done, count):
                yield records[offset + index]
            seen[origin] = max(done, count)
            offset += count
