"""Replay: submit again the CORTEX jobs that ended dead-lettered (failed, their attempts exhausted).

Each dead job is replayed once (``client.jobs.retry``: a new job, child of the dead one in
lineage, owned by the dead job's owner, who reads it as their own). The ids replayed are kept in
ENGRAM (``wraith/replayed.json``: ``{dead id: new id}``), so neither the dead job nor its replay,
should that die too, is replayed again: it stays dead for an operator to look at (``mnemos jobs
list --status dead``). A pipeline step's job is never replayed: it belongs to its run, which
failed with it, and ``mnemos resume`` runs it again there (a replay ran it a second time outside
the run, its result read by no one, whatever its ``retries``).
"""

from __future__ import annotations

from typing import Any

from mnemos.cortex.job import RUN_LABEL
from mnemos.errors import ConflictError, NotFoundError

__all__ = ["REPLAYED", "replay_dead_jobs"]

REPLAYED = "wraith/replayed.json"
_KEEP = 10  # remembered replays: this many times the listing limit


def replay_dead_jobs(client: Any, *, limit: int = 1000) -> dict[str, Any]:
    """Retry up to ``limit`` dead jobs (newest first); returns ``{replayed: {old: new}, skipped: [...]}``."""
    engram = client.engram
    done: dict[str, str] = engram.read_json(REPLAYED) if engram.exists(REPLAYED) else {}
    replays = set(done.values())
    replayed: dict[str, str] = {}
    skipped: list[str] = []
    for view in client.jobs.list(status="dead", limit=limit):
        job_id = str(view["id"])
        if job_id in done or job_id in replays or RUN_LABEL in (view.get("labels") or {}):
            skipped.append(job_id)
            continue
        try:
            new_id = client.jobs.retry(job_id, keep_owner=True).id
        except (ConflictError, NotFoundError):  # retried or removed meanwhile
            skipped.append(job_id)
            continue
        replayed[job_id] = done[job_id] = new_id
        engram.write_json(REPLAYED, done)  # right after each retry: a crash replays at most one twice
    if len(done) > _KEEP * limit:
        done = dict(list(done.items())[-_KEEP * limit :])
        engram.write_json(REPLAYED, done)
    return {"replayed": replayed, "skipped": skipped}
