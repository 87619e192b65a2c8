"""CORTEX checkpoints and the job archive: restart time and memory that follow live jobs, not history.

A *checkpoint* is the state of every job CORTEX holds in memory at one point of the journal,
written as ``cortex/checkpoints/<segment>.json`` where ``<segment>`` is the stem of the last
journal segment it covers. CORTEX takes it (``Cut``) at the moment the journal writer takes a
batch, when memory holds exactly the records of that batch and of every batch before it, and
writes it once that batch is durable. A restart reads the newest checkpoint and only the journal
records after it (``load``): what it reads grows with the jobs alive, not with the jobs ever run.

Finished jobs leave memory ``settings.cortex.retention`` seconds after they finished. A cut
moves them to the *archive* before the checkpoint that no longer holds them is written::

    cortex/archive/<2 hex of sha1(id)>/<seq>.json     a segmented log of final job states

so ``GET /v1/jobs/{id}`` still answers for them (one bucket read). WRAITH's log compaction merges
each bucket's segments and drops journal segments that the older kept checkpoint covers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from mnemos.cortex.job import Job, apply_record
from mnemos.cortex.records import parse_record
from mnemos.engram import Engram
from mnemos.engram.logs import parse_segment, read_log, read_manifest, read_records, stem
from mnemos.errors import NotFoundError

__all__ = [
    "ARCHIVE",
    "CHECKPOINTS",
    "KEEP_CHECKPOINTS",
    "Cut",
    "Loaded",
    "archive_logs",
    "covered_by_checkpoints",
    "find_archived",
    "job_from_state",
    "job_state",
    "load",
    "tail_records",
]

CHECKPOINTS = "cortex/checkpoints"
ARCHIVE = "cortex/archive"
KEEP_CHECKPOINTS = 2
_RUNTIME = frozenset({"committed", "settled", "slot", "timer", "accepted", "shown"})
_STATE_FIELDS = tuple(f.name for f in fields(Job) if f.name not in _RUNTIME)
_NO_SEGMENT = "00000000000000000000-00000000"
log = logging.getLogger(__name__)


def job_state(job: Job) -> dict[str, Any]:
    """What a checkpoint keeps of a job (every journaled field; lists copied, they may still grow)."""
    state = {name: getattr(job, name) for name in _STATE_FIELDS}
    state["logs"] = list(job.logs)
    return state


def job_from_state(state: dict[str, Any]) -> Job:
    job = Job(**{k: v for k, v in state.items() if k in _STATE_FIELDS})
    job.committed = job.terminal
    return job


def _bucket(job_id: str) -> str:
    return hashlib.sha1(job_id.encode(), usedforsecurity=False).hexdigest()[:2]


@dataclass
class Cut:
    """A checkpoint taken in memory: live jobs, the finished jobs leaving memory, the job counter, and
    each fair queue's virtual time per priority (``QueueState.virtual_times``)."""

    jobs: list[dict[str, Any]]
    evicted: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0
    vtime: dict[str, dict[int, int]] = field(default_factory=dict)
    taken_at: float = field(default_factory=time.time)

    def write(self, engram: Engram, after: str | None) -> str:
        """Archive the evicted jobs, then write the checkpoint covering segments up to ``after``.

        Blocking (run it on a thread). Returns the checkpoint's key. Older checkpoints beyond
        ``KEEP_CHECKPOINTS`` are deleted.
        """
        buckets: dict[str, list[dict[str, Any]]] = {}
        for state in self.evicted:
            buckets.setdefault(_bucket(state["id"]), []).append(state)
        for name, states in sorted(buckets.items()):
            engram.append(f"{ARCHIVE}/{name}", states)
        key = f"{CHECKPOINTS}/{stem(after) if after else _NO_SEGMENT}.json"
        doc = {"after": after, "seq": self.seq, "takenAt": self.taken_at, "jobs": self.jobs, "vtime": self.vtime}
        engram.write_bytes(key, json.dumps(doc, separators=(",", ":")).encode())
        for old in engram.list(CHECKPOINTS)[:-KEEP_CHECKPOINTS]:
            engram.delete(old)
        return key


@dataclass
class Loaded:
    """What a (re)starting CORTEX reads: its jobs, the job counter, the last segment it covers, and the
    virtual times the checkpoint kept (queue -> priority -> turn; none in a checkpoint older than them)."""

    jobs: dict[str, Job]
    seq: int
    after: str | None
    checkpoint: str | None
    tail: int
    vtime: dict[str, dict[int, int]] = field(default_factory=dict)


def _origin_after(key: str, after: str | None) -> bool:
    parsed = parse_segment(key)
    return after is None or (parsed is not None and parsed[0] > stem(after))


def tail_records(engram: Engram, log: str, after: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(segment key, record)`` of every record of ``log`` written after segment ``after``.

    Segments that the cut covers are skipped without being read; records of compacted segments
    are told apart by their manifest. Also correct while WRAITH compacts the log (a segment
    merged away meanwhile makes it list again and skip what it already yielded).
    """
    seen: set[tuple[str, int]] = set()
    for _attempt in range(100):
        try:
            for key in engram.segments(log):
                manifest = read_manifest(engram, log, key)
                if manifest is None:
                    if not _origin_after(key, after):
                        continue
                    positions = [(key, len(records := read_records(engram, key)))]
                else:
                    positions = [(str(k), int(n)) for k, n in manifest["segments"]]
                    if not any(_origin_after(k, after) for k, _ in positions):
                        continue
                    records = read_records(engram, key)
                offset = 0
                for origin, count in positions:
                    if _origin_after(origin, after):
                        for index in range(count):
                            if (origin, index) not in seen:
                                seen.add((origin, index))
                                yield origin, records[offset + index]
                    offset += count
            return
        except NotFoundError:
            continue  # merged away while we read: list again
    raise NotFoundError(f"log {log} kept changing while it was read; try again", param="log")


def load(engram: Engram, journal: str) -> Loaded:
    """The jobs of the newest readable checkpoint, with the journal records after it applied."""
    jobs: dict[str, Job] = {}
    vtime: dict[str, dict[int, int]] = {}
    seq, after, used = 0, None, None
    for key in reversed(engram.list(CHECKPOINTS)):
        try:
            doc = engram.read_json(key)
        except (NotFoundError, ValueError) as exc:  # pruned meanwhile, or cut short: the one before
            log.warning("checkpoint %s unreadable (%s); trying the one before", key, exc)
            continue
        jobs = {state["id"]: job_from_state(state) for state in doc["jobs"]}
        seq, after, used = int(doc.get("seq") or 0), doc.get("after"), key
        vtime = {queue: {int(p): int(t) for p, t in times.items()} for queue, times in (doc.get("vtime") or {}).items()}
        break
    tail = 0
    last = after
    for origin, raw in tail_records(engram, journal, after):
        if (rec := parse_record(raw)) is not None:
            apply_record(jobs, rec)
        tail += 1
        last = origin
    for job in jobs.values():
        job.committed = job.terminal
        seq = max(seq, job.seq)
    return Loaded(jobs=jobs, seq=seq, after=last, checkpoint=used, tail=tail, vtime=vtime)


def find_archived(engram: Engram, job_id: str) -> Job | None:
    """A finished job that left CORTEX's memory, read back from the archive (``None``: unknown)."""
    found = None
    for state in read_log(engram, f"{ARCHIVE}/{_bucket(job_id)}"):
        if state.get("id") == job_id:
            found = state  # the last copy wins (a restart may archive a job twice)
    return job_from_state(found) if found is not None else None


def archive_logs(engram: Engram) -> list[str]:
    """The archive's bucket logs (WRAITH compacts each)."""
    return sorted({"/".join(key.split("/")[:3]) for key in engram.list(ARCHIVE) if key.count("/") >= 3})


def covered_by_checkpoints(engram: Engram) -> str | None:
    """The last journal segment that every kept checkpoint covers (segments up to it can go)."""
    keys = engram.list(CHECKPOINTS)
    if len(keys) < KEEP_CHECKPOINTS:
        return None
    try:
        return engram.read_json(keys[-KEEP_CHECKPOINTS]).get("after")  # type: ignore[no-any-return]
    except NotFoundError:
        return None
