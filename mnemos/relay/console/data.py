"""What the console pages show, read from the gateway's replica state and the platform's stores.

Each loader takes the replica's ``Gateway`` (routes, ENGRAM) and returns plain dicts for the
templates; reads that touch ENGRAM or actors run off the event loop.
"""

from __future__ import annotations

import difflib
import itertools
import time
from collections import defaultdict
from typing import Any

import yaml

__all__ = ["JOBS_SHOWN", "RUNS_SHOWN", "audit_events", "diff_generations", "jobs", "layered", "model_rows", "runs",
           "usage"]

_RATE_WINDOW_S = 300.0


class _Rates:
    """Requests/s, tokens/s and errors per model from two samples of the cluster's counters."""

    def __init__(self) -> None:
        self._last: tuple[float, dict[str, dict[str, float]]] | None = None

    def sample(self) -> dict[str, dict[str, float | None]]:
        from mnemos.trace import metrics

        totals: dict[str, dict[str, float]] = defaultdict(lambda: {"requests": 0.0, "tokens": 0.0, "errors": 0.0})
        try:
            snapshot = metrics.collect()
        except Exception:  # noqa: BLE001 - no metrics aggregator: rates unknown
            return {}
        specs = snapshot.get("specs") or {}
        for name, series in (snapshot.get("counters") or {}).items():
            spec = specs.get(name)
            names = tuple(spec[3]) if spec is not None else ()
            for key, value in series.items():
                labels = dict(zip(names, key if isinstance(key, (tuple, list)) else (key,), strict=False))
                model = labels.get("model")
                if not model:
                    continue
                if name == "mnemos_relay_requests_total":
                    totals[model]["requests"] += value
                    if str(labels.get("status", "200"))[:1] in ("4", "5"):
                        totals[model]["errors"] += value
                elif name == "mnemos_tokens_total":
                    totals[model]["tokens"] += value
        now = time.monotonic()
        rates: dict[str, dict[str, float | None]] = {}
        if self._last is not None and 0 < now - self._last[0] < _RATE_WINDOW_S:
            dt = now - self._last[0]
            for model, cur in totals.items():
                old = self._last[1].get(model, {"requests": 0.0, "tokens": 0.0})
                rates[model] = {"rps": (cur["requests"] - old["requests"]) / dt,
                                "tps": (cur["tokens"] - old["tokens"]) / dt, "errors": cur["errors"]}  # fmt: skip
        else:
            rates = {m: {"rps": None, "tps": None, "errors": cur["errors"]} for m, cur in totals.items()}
        self._last = (now, {m: dict(v) for m, v in totals.items()})
        return rates


RATES = _Rates()


def model_rows(gateway: Any) -> list[dict[str, Any]]:
    """One row per Model (registered or routed): the status the relay controller wrote (phase,
    ready/desired replicas, reason), generation, engine and rates. A Model the controller has not
    reconciled yet is ``Pending``."""
    from mnemos.genome import Registry
    from mnemos.relay.model_status import read_status, status_record

    rates = RATES.sample()
    routes = {name: route.entry for name, route in gateway.models.items()}
    try:
        registered = {r.name: r for r in Registry(gateway.engram).list("Model")}
    except Exception:  # noqa: BLE001 - the registry is unreadable: show what the gateway routes
        registered = {}
    rows = []
    for name in sorted(set(routes) | set(registered)):
        try:
            record = read_status(gateway.engram, name)
        except Exception:  # noqa: BLE001 - status is informative: the page renders without it
            record = None
        record = record or status_record(name, routes.get(name))
        entry, resource, rate = routes.get(name, {}), registered.get(name), rates.get(name, {})
        rows.append({
            "name": name,
            "phase": record.get("phase") or "Pending",
            "ready": record.get("ready_replicas"),
            "desired": record.get("desired_replicas"),
            "reason": record.get("reason") or "",
            "message": record.get("message") or "",
            # the Model's generation, and the one that answers while a rollout is on its way
            "generation": getattr(resource, "generation", None) or record.get("generation") or entry.get("generation"),
            "served": record.get("served_generation"),
            "engine": record.get("engine") or entry.get("engine") or _engine(resource),
            "rps": rate.get("rps"),
            "tps": rate.get("tps"),
            "errors": rate.get("errors", 0),
        })  # fmt: skip
    return rows


def _engine(resource: Any) -> str | None:
    runtime = getattr(getattr(resource, "spec", None), "runtime", None)
    return getattr(runtime, "engine", None)


def diff_generations(engram: Any, kind: str, name: str, a: int, b: int) -> list[str]:
    """A unified diff of two generations' documents (YAML)."""
    from mnemos.genome import Registry

    registry = Registry(engram)
    docs = []
    for gen in (a, b):
        doc = registry.get(kind, name, gen).dump()
        docs.append(yaml.safe_dump(doc, sort_keys=True).splitlines())
    return list(difflib.unified_diff(docs[0], docs[1], f"generation {a}", f"generation {b}", lineterm=""))


def may_see_all(principal: Any) -> bool:
    return getattr(principal, "role", "admin") in ("admin", "operator", "viewer")


def owns(principal: Any, owner: str | None) -> bool:
    """Whether the principal may see a job or run of ``owner`` (developers: their own only)."""
    return may_see_all(principal) or (bool(owner) and owner == getattr(principal, "subject", None))


JOBS_SHOWN = 200
"""The newest jobs the Jobs page lists (of those the caller may see, and of the filters)."""


async def jobs(principal: Any, queue: str | None, status: str | None, owner: str | None) -> list[dict[str, Any]]:
    """Recent jobs the principal may see, without the data of those it does not read (as ``GET /v1/jobs``)."""
    from mnemos.cortex.http import cortex_handle, job_for

    # filtered by owner in CORTEX, before the page's limit: a developer's (or the named owner's) jobs are
    # listed however many newer jobs others have submitted since
    mine = None if may_see_all(principal) else str(getattr(principal, "subject", None) or "")
    if owner and mine is not None and owner != mine:
        return []  # another's jobs: never a developer's to list
    whose = mine or owner or None
    listed = await cortex_handle().list.remote(queue=queue or None, status=status or None, limit=JOBS_SHOWN,
                                               principal=whose)  # fmt: skip
    out = []
    for job in listed:
        job_owner = job.get("owner") or job.get("principal")
        if owns(principal, job_owner) and (not owner or job_owner == owner):
            out.append(job_for(principal, {**job, "owner": job_owner}))
    return out


RUNS_SHOWN = 100
"""The newest runs the Pipelines page lists (of those the caller may see)."""


def runs(engram: Any, principal: Any) -> list[dict[str, Any]]:
    """Recent runs the principal may see, each as its ``run.*`` event shows it (pipeline name, steps' status),
    without the data of those it does not read."""
    from mnemos.synkron import _state
    from mnemos.synkron.http import run_for

    # every run is read either way (``list_runs`` sorts them all): filter by owner before the page's limit,
    # so a developer's runs are listed however many newer runs others have started since
    visible = (r for r in _state.list_runs(engram, None, limit=None) if owns(principal, r.get("principal")))
    return [_state.event_view(run_for(principal, r)) for r in itertools.islice(visible, RUNS_SHOWN)]


def layered(nodes: list[str], parents: dict[str, list[str]]) -> dict[str, Any]:
    """Positions of a DAG drawn left to right by depth: ``{"nodes": {id: (x, y)}, "width", "height"}``."""
    depth: dict[str, int] = {}

    def level(node: str, seen: frozenset[str] = frozenset()) -> int:
        if node not in depth:
            ups = [p for p in parents.get(node, []) if p in nodes and p not in seen]
            depth[node] = 1 + max((level(p, seen | {node}) for p in ups), default=-1)
        return depth[node]

    columns: dict[int, list[str]] = defaultdict(list)
    for node in nodes:
        columns[level(node)].append(node)
    pos = {}
    for col, members in columns.items():
        for row, node in enumerate(members):
            pos[node] = (20 + col * 220, 20 + row * 90)
    width = 20 + 220 * (max(columns) + 1 if columns else 1)
    height = 20 + 90 * max((len(m) for m in columns.values()), default=1)
    return {"nodes": pos, "width": width, "height": height}


USAGE_WINDOW_S = 24 * 3600.0
"""The window of the Keys and usage page (the same ledger ``GET /v1/usage`` reads)."""


async def usage(ledger: Any, engram: Any, window: float = USAGE_WINDOW_S, *,
                principal: Any = None) -> list[dict[str, Any]]:  # fmt: skip
    """Per principal over ``window`` s: requests, tokens, spend and the last hour with traffic, from
    SOUL's usage ledger (the ``ratelimit`` actor: ``ledger.usage.remote(since, until)``); refused
    sign-ins from the audit log.

    ``principal``: who reads them. A caller with a team (a team's admin) reads the rows of its team
    only, as it lists its team's credentials (``mnemos.soul.http.manages``): ledger rows of the team,
    refusals of the team's credentials; a caller without one (``None``: the local admin) reads all.
    """
    import asyncio

    from mnemos.relay.usage_http import aggregate

    since = time.time() - window
    rows = [row for row in await ledger.usage.remote(since, None) if _manages(principal, None, row.get("team"))]
    totals = {e["principal"]: e for e in aggregate(rows, ("principal",))["data"]}
    last: dict[str, float] = {}
    for row in rows:
        last[row["principal"]] = max(last.get(row["principal"], 0.0), float(row["hour"]))
    refused = await asyncio.to_thread(_refusals, engram, since, principal)
    out = []
    for who in sorted(set(totals) | set(refused)):
        entry = totals.get(who) or {"requests": 0, "total_tokens": 0, "spend": 0.0}
        out.append({"principal": who or "anonymous", "requests": entry["requests"], "tokens": entry["total_tokens"],
                    "spend": entry["spend"], "refused": refused.get(who, 0), "last": last.get(who)})  # fmt: skip
    return out


def _manages(principal: Any, credential_id: Any, team: Any) -> bool:
    """Whether ``principal`` reads usage of the credential ``credential_id`` of ``team``: as it lists
    credentials (``mnemos.soul.http.manages``)."""
    if principal is None or not getattr(principal, "team", ""):
        return True
    from mnemos.soul.http import manages

    return manages(principal, {"id": credential_id, "team": team})


def _refusals(engram: Any, since: float, principal: Any = None) -> dict[str, int]:
    """Refused credentials per subject since ``since`` (audit events ``auth.refused``), of the
    credentials ``principal`` manages (``_manages``: a refusal names the credential and its team only
    when it had a valid one)."""
    from mnemos.trace.lineage import events

    counts: dict[str, int] = defaultdict(int)
    for ev in events(engram):
        attrs = ev.get("attrs") or {}
        if (ev.get("type") == "audit" and attrs.get("action") == "auth.refused" and float(ev.get("ts") or 0) >= since
                and _manages(principal, attrs.get("grant_id"), attrs.get("team"))):  # fmt: skip
            counts[attrs.get("subject") or "unauthenticated"] += 1 + int(attrs.get("more") or 0)  # a summary: N more
    return dict(counts)


def audit_events(engram: Any, principal: Any = None, limit: int = 200) -> list[dict[str, Any]]:
    """Audit events (who changed what, when), newest first: every one for operators and admins (and
    with authentication off, ``principal`` ``None``), the principal's own for everyone else (the
    actor, or the refused subject, is them: ``mnemos.soul.ownership.reads_data``)."""
    from mnemos.soul.ownership import reads_data
    from mnemos.trace.lineage import events, owner_of

    out = []
    for ev in events(engram):
        if ev.get("type") != "audit" or not reads_data(principal, owner_of(ev)):
            continue
        attrs = dict(ev.get("attrs") or {})
        who = attrs.pop("actor", None) or attrs.pop("subject", None) or attrs.pop("principal", None) or "—"
        action = attrs.pop("action", "")
        what = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()) if v not in (None, "", [], {}))
        out.append({"ts": ev.get("ts"), "who": who, "action": action, "what": what})
    return list(reversed(out))[:limit]
