"""TRACE: OpenTelemetry spans across Ray calls, cluster-wide Prometheus metrics, lineage.

Spans: ``setup_tracing``, ``span``, ``inject``/``extract`` (a W3C carrier crosses Ray calls),
``spans_for(trace_id)`` from the ``trace-collector`` actor. Metrics: ``mnemos.trace.metrics``
(the catalogue, ``render()`` for ``/metrics``). HTTP: ``mnemos.trace.http:router``.
Lineage lives in ``mnemos.trace.lineage``.
"""

from __future__ import annotations

from opentelemetry.trace import SpanKind

from mnemos.trace import metrics
from mnemos.trace.metrics import observe_request, record_tokens, render
from mnemos.trace.telemetry import (
    current_trace_id,
    extract,
    flush_spans,
    inject,
    local_spans,
    recent_spans,
    setup_tracing,
    shutdown_tracing,
    span,
    spans_for,
    start_span,
    tracing_info,
)

__all__ = [
    "SpanKind",
    "current_trace_id",
    "extract",
    "flush_spans",
    "inject",
    "local_spans",
    "metrics",
    "observe_request",
    "recent_spans",
    "record_tokens",
    "render",
    "setup_tracing",
    "shutdown_tracing",
    "span",
    "spans_for",
    "start_span",
    "tracing_info",
]
