"""TRACE lineage: append-only events from intent to execution to result, in ENGRAM segments.

An event is a node of the lineage graph::

    {"id": "job:abc", "type": "execution", "ts": 1700000000.0,
     "parents": ["run:r1", "artifact:sha256:…"], "attrs": {...}}

``parents`` point upstream (what this node came from). Ids are prefixed by what they name:
``run:``, ``step:``, ``job:``, ``request:``, ``artifact:sha256:…``, ``model:<name>@<gen>``,
``resource:<Kind>/<name>@<gen>``, ``file:<path>``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from mnemos.engram import Engram

LOG = "lineage"
EventType = str  # intent | execution | result | request | audit | artifact


def event(node_id: str, type: EventType, *, parents: list[str] | tuple[str, ...] = (), **attrs: Any) -> dict[str, Any]:
    """Build one lineage event."""
    return {"id": node_id, "type": type, "ts": time.time(), "parents": list(parents), "attrs": attrs}


class LineageWriter:
    """Buffers events and writes them as one ENGRAM segment per flush (group commit)."""

    def __init__(self, engram: Engram) -> None:
        self.engram = engram
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, node_id: str, type: EventType, *, parents: list[str] | tuple[str, ...] = (), **attrs: Any) -> dict[str, Any]:
        ev = event(node_id, type, parents=parents, **attrs)
        with self._lock:
            self._buffer.append(ev)
        return ev

    def flush(self) -> int:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            self.engram.append(LOG, batch)
        return len(batch)


def record(engram: Engram, node_id: str, type: EventType, *, parents: list[str] | tuple[str, ...] = (), **attrs: Any) -> dict[str, Any]:
    """Write one event now (its own segment)."""
    ev = event(node_id, type, parents=parents, **attrs)
    engram.append(LOG, [ev])
    return ev


def events(engram: Engram) -> list[dict[str, Any]]:
    """Every lineage event, in write order."""
    return list(engram.read_log(LOG))
