"""``GET /v1/usage``: requests, tokens and spend per principal, team and model over a window.

Query: ``principal``, ``team``, ``model`` (filters), ``window`` (``1h``, ``24h``, ``30d``; default
``24h``; the ledger counts whole hours, so the sum starts at the hour holding now − window, the
answer's ``since``), ``group_by`` (comma-separated of ``principal,team,model``, each counted once;
default all three); any other parameter, or one given twice, is a 422 naming it (never an ignored
filter). Admins and operators without a team read everyone's usage; other roles read only their own: their
rows, narrowed by the filters. A filter naming what the caller may not read is 403 naming it, never an empty answer:
``principal`` other than the caller's subject, ``team`` other than its credential's team (a
caller without a team names none). An admin or operator bound to a team (``mnemos token create
--team``) reads that team's usage, as it manages (an admin) or lists (the console) that team's
credentials (``mnemos.soul.http.manages``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from mnemos._http import check_query
from mnemos._model import POSITIVE_DURATION_PATTERN
from mnemos.errors import PermissionDeniedError, ValidationError
from mnemos.relay import _responses as out
from mnemos.relay._errors import pattern_hint

__all__ = ["GROUPS", "aggregate", "build_router", "check_own_filters"]

GROUPS = ("principal", "team", "model")
_HOUR = 3600.0  # the ledger's rows (``mnemos.soul._ratelimit_actor``)
_READ_ALL = frozenset({"admin", "operator"})
# What the validators below accept, published in /openapi.json (window: POSITIVE_DURATION_PATTERN).
_GROUP = "(principal|team|model)"
_GROUP_BY = rf"^ *{_GROUP} *(, *{_GROUP} *)*$"
pattern_hint(_GROUP_BY, "a comma-separated list of principal, team and model")


def _window(value: str) -> float:
    from pydantic import TypeAdapter
    from pydantic import ValidationError as PydanticValidationError

    from mnemos._model import Duration

    try:
        seconds = float(TypeAdapter(Duration).validate_python(value))
    except PydanticValidationError:
        raise ValidationError(f"window: {value[:40]!r} is not a duration (e.g. 1h, 24h, 30d)", param="window") from None
    if seconds <= 0:
        raise ValidationError("window must be positive", param="window")
    return seconds


def _group_by(value: str) -> tuple[str, ...]:
    """The groups of ``group_by``, each once, in the order first named (``team,team`` is ``team``)."""
    groups = tuple(dict.fromkeys(g.strip() for g in value.split(",") if g.strip()))
    bad = [g for g in groups if g not in GROUPS]
    if bad or not groups:
        raise ValidationError(f"group_by: use some of {', '.join(GROUPS)}", param="group_by")
    return groups


def aggregate(rows: list[dict[str, Any]], groups: tuple[str, ...], **filters: str | None) -> dict[str, Any]:
    """Sum ledger rows by ``groups`` after ``filters`` (``principal``/``team``/``model``: exact match)."""
    totals: dict[tuple[str, ...], dict[str, Any]] = {}
    total = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "spend": 0.0, "cached": 0}
    for row in rows:
        if any(value is not None and row.get(name) != value for name, value in filters.items()):
            continue
        key = tuple(str(row.get(g, "")) for g in groups)
        entry = totals.setdefault(key, {**dict(zip(groups, key, strict=True)), "requests": 0, "prompt_tokens": 0,
                                        "completion_tokens": 0, "spend": 0.0, "cached": 0})  # fmt: skip
        for field in ("requests", "prompt_tokens", "completion_tokens", "spend", "cached"):
            entry[field] += row.get(field, 0)
            total[field] += row.get(field, 0)
    data = sorted(totals.values(), key=lambda e: (-e["spend"], -e["requests"], [e[g] for g in groups]))
    for entry in (*data, total):
        entry["total_tokens"] = entry["prompt_tokens"] + entry["completion_tokens"]
        entry["spend"] = round(entry["spend"], 9)
    return {"object": "list", "data": data, "total": total}


def check_own_filters(caller: Any, *, principal: str | None, team: str | None) -> None:
    """Refuse a filter naming usage that ``caller`` (a role that reads only its own) may not read:
    another ``principal`` than its subject, another ``team`` than its credential's (403 naming it)."""
    own = {"principal": str(caller.subject), "team": str(getattr(caller, "team", "") or "")}
    for param, value in (("principal", principal), ("team", team)):
        if value is not None and value != own[param]:
            hint = (
                f"leave out {param} or use {param}={own[param]}"
                if own[param]
                else f"leave out {param} (its credential has no {param})"
            )
            whose = (f"an {caller.role} of team {own['team']} reads only its team's usage" if caller.role in _READ_ALL
                     else f"role {caller.role} may read only its own usage")  # fmt: skip
            raise PermissionDeniedError(f"{whose}; {hint}", param=param)


def build_router(admit: Callable[[Request, str], Awaitable[Any]], actor: Callable[[], Any]) -> APIRouter:
    """The usage router.

    Args:
        admit: the edge's ``admit(request, verb)`` (returns the principal; None when auth is off).
        actor: returns the ``ratelimit`` actor, which holds the ledger.
    """
    from mnemos.relay._edge import VERB_KEY

    router = APIRouter()

    @router.get("/v1/usage", tags=["usage"], openapi_extra={VERB_KEY: "read-artifacts"},
                responses={403: {"description": "another principal's or team's usage, asked by a role that reads only "
                                                   "its own"},
                           422: {"description": "window or group_by is malformed, or a query parameter is unknown or "
                                                "repeated"}})  # fmt: skip
    async def usage(request: Request, principal: str | None = None, team: str | None = None,
                    model: str | None = None,
                    window: str = Query("24h", pattern=POSITIVE_DURATION_PATTERN,
                                        description="A positive duration: 1h, 24h, 30d."),
                    group_by: str = Query("principal,team,model", pattern=_GROUP_BY,
                                          description="Comma-separated: principal, team, model."),
                    ) -> Response:  # fmt: skip
        """Usage and spend per principal, team and model (your own unless admin or operator; a team's: its team's)."""
        caller = await admit(request, "read-artifacts")
        check_query(request, "principal", "team", "model", "window", "group_by")  # a typo is no filter
        seconds = _window(window)
        groups = _group_by(group_by)
        if caller is not None and caller.role not in _READ_ALL:
            check_own_filters(caller, principal=principal, team=team)
            principal = caller.subject
        elif caller is not None and getattr(caller, "team", ""):
            check_own_filters(caller, principal=None, team=team)  # a team's admin or operator: that team's usage
            team = caller.team
        now = time.time()
        rows = await actor().usage.remote(now - seconds, None)
        body = aggregate(rows, groups, principal=principal, team=team, model=model)
        # The ledger counts whole hours: the sum starts at the hour that holds now - window (window=5m
        # at 10:25 counts from 10:00), and since says so (it said 10:20 over rows from 10:00).
        body.update(window=window, since=max(0.0, ((now - seconds) // _HOUR) * _HOUR), until=now)
        return out.json_response(body)

    return router
