"""Segmented logs in ENGRAM: the on-store format and the reader.

A log (``journal/cortex``, ``lineage``) is a folder of segments ``<log>/<seq>.json``, each a JSON
list of records; key order is write order. WRAITH's compaction (``mnemos.wraith.compaction``)
merges runs of segments into *compacted* segments with a manifest under ``<log>/_compaction/``;
``read_log`` here reads either form and never yields a record twice nor misses one while a
compaction runs concurrently (compaction deletes what it merged only a minute later, so that a
listing, which is not a snapshot, sees either the merged segment or the ones it replaced).
"""

from __future__ import annotations

import builtins
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

from mnemos._gil import dump_json_paced
from mnemos.engram.keys import validate_key
from mnemos.errors import NotFoundError, ValidationError

__all__ = [
    "MANIFESTS",
    "SegmentStore",
    "append",
    "manifest_key",
    "new_segment_id",
    "parse_segment",
    "read_log",
    "read_manifest",
    "read_records",
    "segments",
    "stem",
]

MANIFESTS = "_compaction"
_SEGMENT = re.compile(r"^(?P<origin>\d{20}-[0-9a-f]{8})(?:-c(?P<inv>\d{6}))?$")
_MAX_GENERATION = 999_999


class SegmentStore(Protocol):
    """The key/value calls logs are made of: an ``Engram`` (``store.py`` imports this module, not back)."""

    def list(self, prefix: str) -> builtins.list[str]: ...
    def read_bytes(self, key: str) -> bytes: ...
    def read_json(self, key: str) -> Any: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...


def new_segment_id() -> str:
    """A segment name that sorts in write order: nanoseconds, then a random suffix."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def append(engram: SegmentStore, log: str, records: list[dict[str, Any]]) -> str:
    """Write ``records`` as one new segment of ``log``; return the segment key."""
    validate_key(log, what="log")
    key = f"{log}/{new_segment_id()}.json"
    # never refused (see dump_json); a long batch is encoded in chunks, so a background flush (the
    # gateway's lineage) does not hold the GIL its replica's event loop waits for
    engram.write_bytes(key, dump_json_paced(records))
    return key


def segments(engram: SegmentStore, log: str) -> list[str]:
    """Segment keys of a log in write order."""
    return [k for k in engram.list(log) if k.endswith(".json") and "/" not in k[len(log) + 1 :]]


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


def read_manifest(engram: SegmentStore, log: str, key: str) -> dict[str, Any] | None:
    """The manifest of a compacted segment, ``None`` for an original one (raises if it vanished)."""
    parsed = parse_segment(key)
    if parsed is None or parsed[1] == 0:
        return None
    return engram.read_json(manifest_key(log, key))


def read_records(engram: SegmentStore, key: str) -> list[Any]:
    data = json.loads(engram.read_bytes(key))
    if not isinstance(data, list):
        raise ValidationError(f"segment {key} is not a JSON list of records", param="log")
    return data


def read_log(engram: SegmentStore, log: str) -> Iterator[dict[str, Any]]:
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


def _read_pass(engram: SegmentStore, log: str, seen: dict[str, int]) -> Iterator[dict[str, Any]]:
    keys = segments(engram, log)
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
