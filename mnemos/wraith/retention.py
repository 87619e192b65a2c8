"""Retention: find the blobs that something still reaches, and delete old ones that nothing does.

Reachable, conservatively:

- every digest a ref points at (``refs/…``);
- every ``sha256:<64 hex>`` string in any document of the root outside ``blobs/`` (registry,
  journal, lineage, spaces, run records, WRAITH state …);
- every such string inside a reachable blob that looks like text (JSON manifests such as a
  model's ``{files: {path: digest}}``, pipeline outputs, job results), transitively.

A blob is deleted only when it is unreachable *and* its modification time is older than
``retention_days``: a blob just written whose ref is not set yet is never taken. Refs are read
again right before deleting, so a ref set while the scan ran still protects its blob.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mnemos.engram import Engram
from mnemos.errors import ValidationError
from mnemos.wraith._store import all_keys

__all__ = ["RetentionReport", "digests_in", "reachable_blobs", "retain"]

_DIGEST = re.compile(rb"sha256:([0-9a-f]{64})")
_SCAN_CHUNK = 4 * 1024 * 1024
_OVERLAP = 71  # len("sha256:") + 64, so a digest cut by a chunk boundary is still found
_SKIP_PREFIXES = ("blobs/", "refs/")


@dataclass
class RetentionReport:
    """What a retention pass found and removed."""

    blobs: int = 0
    reachable: int = 0
    deleted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept_young: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "blobs": self.blobs,
            "reachable": self.reachable,
            "deleted": self.deleted,
            "freedBytes": self.freed_bytes,
            "keptYoung": self.kept_young,
        }


def digests_in(data: bytes) -> set[str]:
    """Every ``sha256:<hex>`` string in ``data``."""
    return {"sha256:" + m.decode() for m in _DIGEST.findall(data)}


def _looks_textual(head: bytes) -> bool:
    """JSON, JSONL, YAML or other text: no NUL byte in the first KiB."""
    return b"\x00" not in head[:1024]


def _scan(engram: Engram, key: str, *, text_only: bool) -> set[str]:
    """Digests mentioned in the object at ``key``, read in chunks (``text_only``: skip binary)."""
    found: set[str] = set()
    try:
        with engram.fs.open(engram.path(key), "rb") as fh:
            tail = b""
            first = True
            while chunk := fh.read(_SCAN_CHUNK):
                if first and text_only and not _looks_textual(chunk):
                    return found
                first = False
                window = tail + chunk
                found |= digests_in(window)
                tail = window[-_OVERLAP:]
    except FileNotFoundError:
        pass  # removed while we scanned (a merged log segment): its records live on elsewhere
    return found


def _document_keys(engram: Engram) -> Iterable[str]:
    for key in all_keys(engram):
        if not key.startswith(_SKIP_PREFIXES):
            yield key


def reachable_blobs(engram: Engram) -> set[str]:
    """Digests of every blob a ref, a document or a reachable manifest mentions (transitively)."""
    roots: set[str] = set(engram.refs().values())
    for key in _document_keys(engram):
        roots |= _scan(engram, key, text_only=False)
    reached: set[str] = set()
    todo = [d for d in roots if _is_digest(d)]
    while todo:
        digest = todo.pop()
        if digest in reached:
            continue
        reached.add(digest)
        todo.extend(d for d in _scan(engram, engram.blob_key(digest), text_only=True) if d not in reached)
    return reached


def _is_digest(value: str) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"sha256:[0-9a-f]{64}", value))


def retain(
    engram: Engram, retention_days: float, *, now: float | None = None, dry_run: bool = False
) -> RetentionReport:
    """Delete blobs that nothing reaches and that are older than ``retention_days``.

    Args:
        engram: the store.
        retention_days: minimum age, in days, of a blob that may be deleted.
        now: the current time (for tests).
        dry_run: report what would be deleted without deleting it.
    """
    if retention_days <= 0:
        raise ValidationError("retentionDays must be positive", param="engram.retentionDays")
    now = time.time() if now is None else now
    cutoff = now - retention_days * 86400.0
    report = RetentionReport()
    reachable = reachable_blobs(engram)
    report.reachable = len(reachable)
    candidates: list[tuple[str, int]] = []
    for digest, size, mtime in engram.blobs():
        report.blobs += 1
        if digest in reachable:
            continue
        if mtime >= cutoff:
            report.kept_young += 1
            continue
        candidates.append((digest, size))
    if candidates:
        protected = set(engram.refs().values())  # refs set while the scan ran
        for digest, size in candidates:
            if digest in protected:
                continue
            if not dry_run:
                engram.delete_blob(digest)
            report.deleted.append(digest)
            report.freed_bytes += size
    return report
