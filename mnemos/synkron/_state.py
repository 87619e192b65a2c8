"""A run's state: one JSON document at ``runs/<run-id>/state.json`` in ENGRAM.

Shape (snake_case, as the HTTP API returns it)::

    {"id", "pipeline": {"name", "generation", "digest"}, "doc", "source", "base_dir", "params",
     "principal", "meter": {"subject", "team", "limits_key", "limits", "models"}, "trace_id", "cache",
     "status", "error", "created", "started", "finished",
     "resumes", "inputs": {token: {"digest", "node", "path"}}, "order": [step, ...],
     "steps": {name: {"name", "type", "needs", "outputs", "definition", "status", "job_ids",
                      "executions", "cached", "cache_key", "digests", "result", "error",
                      "started", "finished", "progress": {"done", "total", "rate"}, "warnings"}},
     "outputs": {output name: "runs/<run-id>/<output>"}}
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

from mnemos.engram import Engram, validate_key
from mnemos.errors import NotFoundError
from mnemos.trace.events import publish as announce

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
DONE = frozenset({"succeeded", "cached"})


def state_key(run_id: str) -> str:
    return f"runs/{validate_key(run_id, what='run id')}/state.json"


def output_ref(run_id: str, output: str) -> str:
    return f"runs/{run_id}/{output}"


def save(engram: Engram, state: dict[str, Any]) -> None:
    engram.write_json(state_key(state["id"]), state)
    view = event_view(state)
    with _ANNOUNCED_LOCK:  # the event names the steps that changed since this process's last one of the run
        before = _ANNOUNCED.pop(state["id"], {})
        if state["status"] not in TERMINAL:
            _ANNOUNCED[state["id"]] = view["steps"]
            while len(_ANNOUNCED) > _ANNOUNCED_RUNS:
                _ANNOUNCED.popitem(last=False)
    view["steps"] = {name: step for name, step in view["steps"].items() if before.get(name) != step}
    announce(f"run.{state['status']}", f"run:{state['id']}", owner=state.get("principal"), **view)


_ANNOUNCED: OrderedDict[str, dict[str, Any]] = OrderedDict()
"""The steps each running run's last event showed (this process's): a run of 1,000 steps sent all
of them on every step's change, and the event bus kept gigabytes of them."""
_ANNOUNCED_RUNS = 256
_ANNOUNCED_LOCK = threading.Lock()


def event_view(state: dict[str, Any]) -> dict[str, Any]:
    """A run's status and each step's status, timing, cache hit: what the console renders, and what
    a ``run.*`` event carries, less the steps that did not change since the run's previous event."""
    keep = ("status", "needs", "cached", "started", "finished", "error", "job_ids", "outputs")
    steps = {name: {k: step.get(k) for k in keep} for name, step in state["steps"].items()}
    return {"id": state["id"], "pipeline": state["pipeline"]["name"], "status": state["status"],
            "created": state.get("created"), "finished": state.get("finished"), "steps": steps,
            "outputs": state.get("outputs", {})}  # fmt: skip


def load(engram: Engram, run_id: str) -> dict[str, Any]:
    """The stored state of a run; ``NotFoundError`` naming the run when there is none."""
    try:
        return dict(engram.read_json(state_key(run_id)))
    except NotFoundError:
        raise NotFoundError(f"run {run_id!r} not found", param="run_id") from None


def list_runs(engram: Engram, pipeline: str | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
    """The most recent runs (newest first; all of them when ``limit`` is None), optionally of one pipeline
    (by its exact name)."""
    keys = [k for k in engram.list("runs") if k.endswith("/state.json") and k.count("/") == 2]
    ids = [k.split("/")[1] for k in keys]
    if pipeline:  # a run's id starts with its pipeline's name, and so do those of `<pipeline>-more`'s runs
        ids = [i for i in ids if i.startswith(pipeline + "-")]
    out = []
    for run_id in ids:
        try:
            state = load(engram, run_id)
        except NotFoundError:
            continue
        if pipeline and (state.get("pipeline") or {}).get("name") != pipeline:
            continue
        out.append(state)
    out.sort(key=lambda s: s.get("created") or 0, reverse=True)
    return out if limit is None else out[:limit]


def new_step(name: str, kind: str, needs: list[str], outputs: list[str], definition: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "needs": needs,
        "outputs": outputs,
        "definition": definition,
        "status": "pending",
        "job_ids": [],
        "executions": 0,
        "cached": False,
        "cache_key": None,
        "digests": {},
        "result": None,
        "error": None,
        "started": None,
        "finished": None,
        "progress": {"done": 0, "total": None, "rate": None},
        "warnings": [],
    }


def principal_default() -> str:
    """The principal of a local caller: ``local:<user>``."""
    try:
        user = os.getlogin()
    except OSError:
        import getpass

        user = getpass.getuser()
    return f"local:{user}"


def summary(state: dict[str, Any]) -> dict[str, Any]:
    """The short form of a run for listings."""
    return {
        "id": state["id"],
        "pipeline": state["pipeline"]["name"],
        "status": state["status"],
        "owner": state.get("principal"),
        "created": state.get("created"),
        "steps": {n: s["status"] for n, s in state["steps"].items()},
    }
