"""Log compaction: merge a log's small segments into larger ones, keeping every record in order.

A log (``journal/cortex``, ``lineage``) is a folder of segments ``<log>/<seq>.json``, each a JSON
list of records, where ``<seq>`` is ``<20-digit time_ns>-<8 hex>`` and the key order is the write
order. Compaction merges a run of consecutive *sealed* segments (older than ``min_age``) into one
*compacted* segment whose key sorts exactly where the first merged segment was::

    <log>/<first original seq>-c<999999 - generation>.json      the merged records (a JSON list)
    <log>/_compaction/<that stem>.json                          its manifest

``-`` sorts before ``.``, so ``X-c999999.json`` comes just before ``X.json`` and after every
earlier segment; recompacting (``generation`` + 1) sorts before the previous compacted segment.
The manifest names what the segment replaced (``replaces``: the keys deleted after it was
written) and where every record came from (``segments``: ``[original key, record count]``, flat,
in order), so a reader can tell which records it has already seen.

Steps, and what a crash between them leaves:

1. write the manifest              crash: an orphan manifest (no segment); removed by the next run
2. write the compacted segment     crash: the records exist twice (compacted + originals);
                                   readers dedupe with the manifest; a later run deletes the originals
3. delete the replaced segments    crash: some originals left; same as above
4. delete the replaced segments' own manifests (when a compacted segment was recompacted)

Steps 3 and 4 wait until the compacted segment is ``KEEP_REPLACED_S`` old (a later run does them):
listing a folder is not a snapshot (a directory read, S3's pages), and a reader listing while a
merge lands could otherwise miss both the new segment (written behind it) and the ones it replaced
(deleted ahead of it), and with them every record they held. A listing shorter than that sees one
or the other; replaced segments still there are never merged again, and readers skip them.

``mnemos.engram.logs.read_log`` is the reader that never yields a record twice nor misses one
while a compaction runs concurrently; ``Engram.read_log`` uses it.

The CORTEX journal (``journal/cortex``) is also truncated: segments that every kept CORTEX
checkpoint covers are never read again (a restart reads the checkpoint and the tail after it,
finished jobs live on in ``cortex/archive/``), so they are deleted before merging.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from mnemos.engram import Engram
from mnemos.engram.logs import (
    _MAX_GENERATION,
    MANIFESTS,
    manifest_key,
    parse_segment,
    read_log,
    read_manifest,
    read_records,
    stem,
)
from mnemos.errors import ValidationError

__all__ = ["CORTEX_JOURNAL", "KEEP_REPLACED_S", "CompactionReport", "compact_log", "read_log"]

CORTEX_JOURNAL = "journal/cortex"
KEEP_REPLACED_S = 60.0
"""Replaced segments are deleted once the segment that holds their records is this old (seconds)."""


@dataclass
class CompactionReport:
    """What one compaction of one log did."""

    log: str
    segments_before: int = 0
    segments_after: int = 0
    records: int = 0
    merged: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "segmentsBefore": self.segments_before,
            "segmentsAfter": self.segments_after,
            "records": self.records,
            "merged": len(self.merged),
            "written": self.written,
            "recovered": self.recovered,
            "dropped": len(self.dropped),
        }


def _compacted_key(log: str, origin: str, generation: int) -> str:
    if generation > _MAX_GENERATION:
        raise ValidationError(f"{log}: segment {origin} was compacted too many times", param="log")
    return f"{log}/{origin}-c{_MAX_GENERATION - generation:06d}.json"


def _settle(engram: Engram, log: str, now: float, keep_s: float) -> tuple[list[str], set[str]]:
    """Finish what earlier merges (or a crashed one) left: orphan manifests, and the replaced
    segments whose compacted segment is ``keep_s`` old. ``(deleted keys, keys still waiting)``:
    the replaced segments kept for now and the compacted segments that replace them."""
    keys = set(engram.segments(log))
    deleted: list[str] = []
    waiting: set[str] = set()
    for mkey in engram.list(f"{log}/{MANIFESTS}"):
        segment = f"{log}/{stem(mkey)}.json"
        if segment not in keys:
            engram.delete(mkey)  # step 1 ran but not step 2, or step 4 did not finish
            deleted.append(mkey)
            continue
        manifest = engram.read_json(mkey)
        left = [old for old in manifest["replaces"] if old in keys]
        if left and keep_s > 0 and now - float(manifest.get("written", 0.0)) < keep_s:
            waiting.update(left)
            waiting.add(segment)
            continue
        for old in left:
            engram.delete(old)
            keys.discard(old)
            if (parse_segment(old) or ("", 0))[1]:  # a compacted segment: its manifest goes with it
                engram.delete(manifest_key(log, old))
            deleted.append(old)
    return deleted, waiting


def compact_log(
    engram: Engram,
    log: str,
    *,
    min_age: float = 300.0,
    max_records: int = 100_000,
    now: float | None = None,
    keep_replaced: float = KEEP_REPLACED_S,
) -> CompactionReport:
    """Merge the sealed segments of ``log``; every record is kept, in order.

    Args:
        engram: the store.
        log: the log's folder, e.g. ``lineage`` or ``journal/cortex``.
        min_age: only segments written more than this many seconds ago are merged, so a writer
            whose clock or upload lags cannot land a segment between merged ones.
        max_records: a compacted segment holds at most this many records (runs are split).
        now: the current time (for tests).
        keep_replaced: replaced segments are deleted once their compacted segment is this many
            seconds old, by this run or a later one (module docstring).
    """
    now = time.time() if now is None else now
    report = CompactionReport(log=log)
    report.recovered, waiting = _settle(engram, log, now, keep_replaced)
    if log == CORTEX_JOURNAL:
        _drop_checkpointed(engram, log, report)
    keys = engram.segments(log)
    report.segments_before = len(keys)
    cutoff_ns = int((now - min_age) * 1e9)
    group: list[_Member] = []
    size = 0
    for key in keys:
        parsed = parse_segment(key)
        if parsed is None or int(parsed[0][:20]) >= cutoff_ns:
            break  # a foreign name, or a segment that late writers may still land next to
        if key in waiting:  # replaced, or replacing ones kept for readers: a run of its own
            _merge(engram, log, group, report)
            group, size = [], 0
            continue
        member = _Member.load(engram, log, key)
        if group and size + member.count > max_records:
            _merge(engram, log, group, report)
            group, size = [], 0
        group.append(member)
        size += member.count
    _merge(engram, log, group, report)
    _settle(engram, log, now, keep_replaced)  # what is due already (a zero keep_replaced: all)
    report.segments_after = len(engram.segments(log))
    return report


def _drop_checkpointed(engram: Engram, log: str, report: CompactionReport) -> None:
    """Delete the journal segments (and their manifests) that every kept CORTEX checkpoint covers."""
    from mnemos.cortex.checkpoint import covered_by_checkpoints

    after = covered_by_checkpoints(engram)
    if after is None:
        return
    cut = stem(after)
    for key in engram.segments(log):
        manifest = read_manifest(engram, log, key)
        origins = [key] if manifest is None else [str(k) for k, _ in manifest["segments"]]
        if all((parse_segment(o) or ("~",))[0] <= cut for o in origins):
            engram.delete(key)
            if manifest is not None:
                engram.delete(manifest_key(log, key))
            report.dropped.append(key)


@dataclass
class _Member:
    """One segment taking part in a merge: its key, generation, record origins, records if read."""

    key: str
    generation: int
    positions: list[tuple[str, int]]
    records: list[Any] | None

    @property
    def count(self) -> int:
        return sum(n for _, n in self.positions)

    @classmethod
    def load(cls, engram: Engram, log: str, key: str) -> _Member:
        manifest = read_manifest(engram, log, key)
        if manifest is None:  # an original segment: read it to count its records
            records = read_records(engram, key)
            return cls(key, 0, [(key, len(records))], records)
        positions = [(str(k), int(n)) for k, n in manifest["segments"]]
        return cls(key, parse_segment(key)[1], positions, None)  # type: ignore[index]


def _merge(engram: Engram, log: str, group: list[_Member], report: CompactionReport) -> None:
    """Write ``group`` as one compacted segment (manifest first); ``_settle`` deletes what it replaced."""
    if len(group) < 2:
        return
    origin = parse_segment(group[0].key)[0]  # type: ignore[index]
    target = _compacted_key(log, origin, group[0].generation + 1)
    records: list[Any] = []
    for member in group:
        records.extend(member.records if member.records is not None else read_records(engram, member.key))
    replaces = [m.key for m in group]
    positions = [[k, n] for m in group for k, n in m.positions]
    engram.write_json(manifest_key(log, target), {"replaces": replaces, "segments": positions,
                                                  "written": time.time()})  # fmt: skip
    engram.write_bytes(target, json.dumps(records, separators=(",", ":")).encode())
    report.merged.extend(replaces)  # deleted by _settle once the new segment is old enough
    report.written.append(target)
    report.records += len(records)
