"""TRACE over HTTP: ``GET /metrics`` (Prometheus text, cluster-wide) and ``GET /v1/traces/{trace_id}``.

The gateway includes ``router`` (both routes, no auth) or builds its own::

    app.include_router(build_router(auth=authenticate, settings=settings))

``/metrics`` is public by default, as Prometheus scrapes are; with ``trace.metricsAuth: true``
it needs a credential with the verb ``read-lineage`` (give Prometheus a viewer API key:
``authorization: {credentials: mk_…}`` in its scrape config). ``/v1/traces`` takes the ``auth``
dependency when one is given (span attributes name models and principals); a query parameter it does
not take (``?min_span=2``, a typo of ``min_spans``), or one given twice, is a 422 naming it, checked
once the caller is admitted (``/metrics`` takes any: a Prometheus scrape config may add ``params``).

Whose spans (by the rule of lineage's ``request:`` nodes, ``mnemos.relay.control.LineageReader``):
each span has an owner, the subject recorded on it (``mnemos.principal``: the request span of a model
call, ``relay.jobs.submit`` of a job, ``synkron.run`` and ``synkron.step`` of a pipeline run) or else on
its nearest ancestor in the trace that records one; a span with no such ancestor is nobody's. A
developer reads the spans of a trace that are theirs, and no others: anyone's spans sent into the
trace with a ``traceparent`` naming it are theirs, not the trace's first owner's, and are left out
for everyone else; a trace with none of the developer's spans is a 404, as one that does not exist.
Viewers read every span's metadata (names, timings, statuses, ids, models, routes, owners): attribute
values that are data, span events' attributes and status messages (error texts) are withheld, named
under ``withheld``. Operators and admins read everything (``mnemos.soul.ownership``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from mnemos._http import JSONResponse, declared_query
from mnemos.errors import MnemosError, NotFoundError
from mnemos.trace import metrics, telemetry
from mnemos.trace.telemetry import PRINCIPAL_ATTRIBUTE

__all__ = ["PRINCIPAL_ATTRIBUTE", "build_router", "router", "shown_spans", "span_owners"]

SPAN_METADATA = frozenset(
    {"route", "http.route", "http.status_code", "model", "engine", "function", "job_id", "queue", "attempt", "pool",
     "cancelled", "principal", "status", "stream", "endpoint", "adapter", "exception.type", "run_id", "step",
     "pipeline"}
)  # fmt: skip
"""Span attributes (less a ``mnemos.`` prefix) that are metadata; the others are data, withheld from viewers."""


def _error(exc: MnemosError) -> JSONResponse:
    return JSONResponse(exc.to_openai(), status_code=exc.status)


def span_owners(spans: list[dict[str, Any]]) -> dict[str, str | None]:
    """The owner of each span of a trace, by span id: the ``PRINCIPAL_ATTRIBUTE`` of the span itself,
    else of its nearest ancestor in the trace that records one; ``None`` when none up to the root
    does (spans of no request, or whose request span has not arrived yet).

    A span's own record wins over its ancestors': a request sent into another's trace with a
    ``traceparent`` of its own (the gateway records its caller on the request's span) and every
    span under it belong to that caller, and take nothing from the spans they were sent under.
    """
    by_id = {s.get("span_id"): s for s in spans}
    owners: dict[Any, str | None] = {}
    for start in by_id:
        chain: list[Any] = []
        current, owner = start, None
        while current in by_id and current not in owners and current not in chain:
            chain.append(current)
            recorded = (by_id[current].get("attributes") or {}).get(PRINCIPAL_ATTRIBUTE)
            if recorded:
                owner = str(recorded)
                break
            current = by_id[current].get("parent_span_id")
        else:
            owner = owners.get(current)  # known already; else a root's parent, not in the trace (or a loop)
        for span_id in chain:
            owners[span_id] = owner
    return owners


def shown_spans(reader: Any, spans: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The spans of a trace as ``reader`` reads them (see the module docstring): the spans whose owner
    it sees, each with its data when it reads the owner's data; ``None``: none of them.

    ``reader`` is a ``mnemos.trace.lineage.LineageReader`` (RELAY builds it from the caller by SOUL's
    ownership rule, as for lineage); ``None`` reads everything.
    """
    if reader is None:
        return spans or None
    owners = span_owners(spans)
    shown = []
    for span_doc in spans:
        owner = owners.get(span_doc.get("span_id"))
        if reader.sees(owner):
            shown.append(span_doc if reader.reads(owner) else _withhold(span_doc, reader))
    return shown or None


def _withhold(span_doc: dict[str, Any], reader: Any) -> dict[str, Any]:
    """A span without its data: metadata attributes, event names, the status message as an error is shown."""
    attrs, withheld = {}, set()
    for key, value in (span_doc.get("attributes") or {}).items():
        if key.removeprefix("mnemos.") in SPAN_METADATA:
            attrs[key] = value
        else:
            withheld.add(f"attributes.{key}")
    events = []
    for event in span_doc.get("events") or []:
        kept = {k: v for k, v in (event.get("attributes") or {}).items() if k in SPAN_METADATA}
        if len(kept) != len(event.get("attributes") or {}):
            withheld.add("events.attributes")
        events.append({**event, "attributes": kept})
    out = {**span_doc, "attributes": attrs, "events": events}
    if span_doc.get("status_message"):
        out["status_message"] = reader.shown_error(span_doc["status_message"])
        withheld.add("status_message")
    if withheld:
        out["withheld"] = sorted(withheld)
    return out


async def _no_auth() -> None:
    return None


def build_router(
    *,
    auth: Callable[..., Any] | None = None,
    protect_metrics: bool | None = None,
    settings: Any = None,
    reader: Callable[[Any], Any] | None = None,
) -> APIRouter:
    """The TRACE routes.

    Args:
        auth: a FastAPI dependency that authenticates the caller (raising on failure).
        protect_metrics: require ``auth`` on ``/metrics`` too (default: ``trace.metricsAuth``).
        settings: the platform's settings (``trace.metricsAuth``).
        reader: the caller (what ``auth`` returned) as a ``LineageReader``, whose rule decides whose
            traces it reads (RELAY: ``mnemos.relay.control.LineageReader``); ``None``: every trace.
    """
    if protect_metrics is None:
        protect_metrics = bool(settings.trace.metrics_auth) if settings is not None else False
    router = APIRouter(tags=["trace"])
    trace_deps = [Depends(auth)] if auth is not None else []
    metrics_deps = trace_deps if protect_metrics else []
    caller = Depends(auth or _no_auth)
    verb = {"x-mnemos-verb": "read-lineage"}

    @router.get("/metrics", dependencies=metrics_deps, response_class=Response,
                openapi_extra=verb if protect_metrics else None)  # fmt: skip
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition of every component's metrics, summed over the cluster."""
        try:
            body = await asyncio.to_thread(metrics.render)
        except MnemosError as exc:
            return _error(exc)
        return Response(content=body, media_type=metrics.CONTENT_TYPE_LATEST)

    @router.get("/v1/traces/{trace_id}", openapi_extra=verb,
                responses={404: {"description": "no spans recorded for the trace (or none of the caller's)"},
                           422: {"description": "a field failed validation"}})  # fmt: skip
    async def get_trace(
        request: Request,
        # published, and checked by spans_for (422 in the OpenAI shape, with or without the gateway's handlers)
        trace_id: str = Path(..., json_schema_extra={"pattern": r"^[0-9a-f]{32}$"}, description="32 lowercase hex."),
        min_spans: int = Query(0, ge=0, le=10_000, description="Wait until this many of the caller's spans are in."),
        timeout: float = Query(0.0, ge=0.0, le=30.0, allow_inf_nan=False, description="Seconds to wait for min_spans."),
        principal: Any = caller,
    ) -> Any:
        """The spans of one trace from every process, by start time (a developer's own spans only;
        a viewer's without their data)."""
        try:
            await declared_query(request)  # once the caller is admitted: ?min_span=2 (a typo) is a 422, never ignored
        except MnemosError as exc:
            return _error(exc)
        if trace_id == "0" * 32:  # well-formed, but W3C's invalid id: no span ever carries it
            return _error(NotFoundError(f"no spans recorded for trace {trace_id}", param="trace_id"))
        who = reader(principal) if reader and principal is not None else None
        try:
            # awaited, not in a thread: a reader waiting up to 30 s for spans holds none of the replica's threads
            spans = await telemetry.wait_spans(trace_id)
            shown = shown_spans(who, spans) if spans else None
            # ``min_spans`` counts the caller's spans (when the answer comes says nothing of others'): one
            # more span of the trace at a time, until enough are the caller's, the time is up, or the
            # collector waits no longer (it answered with no new span: timed out, or too many readers wait)
            deadline = time.monotonic() + timeout
            while len(shown or ()) < min_spans and (left := deadline - time.monotonic()) > 0:
                before = len(spans)
                spans = await telemetry.wait_spans(trace_id, min_spans=before + 1, timeout=left)
                shown = shown_spans(who, spans) if spans else None
                if len(spans) <= before:
                    break
        except MnemosError as exc:
            return _error(exc)
        if not shown:  # none, or none of the caller's: the same answer
            return _error(NotFoundError(f"no spans recorded for trace {trace_id}", param="trace_id"))
        return {"object": "trace", "trace_id": trace_id, "spans": shown}

    return router


router = build_router()
