"""TRACE over HTTP: ``GET /metrics`` (Prometheus text, cluster-wide) and ``GET /v1/traces/{trace_id}``.

The gateway includes ``router`` (both routes, no auth) or builds its own::

    app.include_router(build_router(auth=authenticate, settings=settings))

``/metrics`` is public by default, as Prometheus scrapes are; with ``trace.metricsAuth: true``
it needs a credential with the verb ``read-lineage`` (give Prometheus a viewer API key:
``authorization: {credentials: mk_…}`` in its scrape config). ``/v1/traces`` takes the ``auth``
dependency when one is given (span attributes name models and principals).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from mnemos._http import JSONResponse
from mnemos.errors import MnemosError, NotFoundError
from mnemos.trace import metrics, telemetry

__all__ = ["build_router", "router"]


def _error(exc: MnemosError) -> JSONResponse:
    return JSONResponse(exc.to_openai(), status_code=exc.status)


def build_router(
    *, auth: Callable[..., Any] | None = None, protect_metrics: bool | None = None, settings: Any = None
) -> APIRouter:
    """The TRACE routes.

    Args:
        auth: a FastAPI dependency that authenticates the caller (raising on failure).
        protect_metrics: require ``auth`` on ``/metrics`` too (default: ``trace.metricsAuth``).
        settings: the platform's settings (``trace.metricsAuth``).
    """
    if protect_metrics is None:
        protect_metrics = bool(settings.trace.metrics_auth) if settings is not None else False
    router = APIRouter(tags=["trace"])
    trace_deps = [Depends(auth)] if auth is not None else []
    metrics_deps = trace_deps if protect_metrics else []
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

    @router.get("/v1/traces/{trace_id}", dependencies=trace_deps, openapi_extra=verb,
                responses={404: {"description": "no spans recorded for the trace"},
                           422: {"description": "a field failed validation"}})  # fmt: skip
    async def get_trace(
        # published, and checked by spans_for (422 in the OpenAI shape, with or without the gateway's handlers)
        trace_id: str = Path(..., json_schema_extra={"pattern": r"^[0-9a-f]{32}$"}, description="32 lowercase hex."),
        min_spans: int = Query(0, ge=0, le=10_000, description="Wait until this many spans are in."),
        timeout: float = Query(0.0, ge=0.0, le=30.0, description="Seconds to wait for min_spans."),
    ) -> Any:
        """The spans of one trace from every process, by start time."""
        if trace_id == "0" * 32:  # well-formed, but W3C's invalid id: no span ever carries it
            return _error(NotFoundError(f"no spans recorded for trace {trace_id}", param="trace_id"))
        try:
            spans = await asyncio.to_thread(telemetry.spans_for, trace_id, min_spans=min_spans, timeout=timeout)
        except MnemosError as exc:
            return _error(exc)
        if not spans:
            return _error(NotFoundError(f"no spans recorded for trace {trace_id}", param="trace_id"))
        return {"object": "trace", "trace_id": trace_id, "spans": spans}

    return router


router = build_router()
