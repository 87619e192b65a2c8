"""TRACE on the gateway's hot path: one ``relay.request`` span, the in-flight gauge, request metrics.

The span's W3C carrier travels to the model deployment in ``GenerationRequest.trace``, where
``neuron.generate`` becomes its child: one trace id from the HTTP request to the runtime, also
recorded in the request's lineage event. Nothing here blocks: spans and metrics are shipped by
TRACE's background threads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanKind

from mnemos.trace import metrics
from mnemos.trace.telemetry import PRINCIPAL_ATTRIBUTE, inject, start_span

__all__ = ["RequestTelemetry"]


class RequestTelemetry:
    """Telemetry of one gateway request; call :meth:`finish` exactly once.

    Args:
        route: the route template (``/v1/chat/completions``), never the raw path.
        model: the model name when it is served (else ``unknown``, to bound label values).
    """

    __slots__ = ("_first", "_span", "_subject", "model", "route", "start", "trace_id")

    def __init__(self, route: str, model: str, headers: Mapping[str, str] | None = None) -> None:
        self.route = route
        self.model = model
        self.start = time.perf_counter()
        self._first = False
        self._subject: str | None = None
        # a client's W3C ``traceparent`` (and ``tracestate``): the request joins the client's trace, as
        # any OpenTelemetry-instrumented server does; TRACE shows each caller its own spans of it
        self._span = start_span("relay.request", carrier=headers, kind=SpanKind.SERVER, route=route, model=model)
        context = self._span.get_span_context()
        self.trace_id = f"{context.trace_id:032x}" if context.is_valid else None
        metrics.RELAY_INFLIGHT.inc(route=route)

    def caller(self, principal: Any) -> None:
        """Record who made the request on its span (its subject, never a credential): TRACE shows a
        developer the spans of its own requests only."""
        subject = getattr(principal, "subject", None)
        if subject:
            self._subject = str(subject)  # set with the others at ``finish``: one call, one lock

    def carrier(self) -> dict[str, str]:
        """The W3C carrier of this request's span, for the model deployment."""
        return inject(from_span=self._span)

    def first_token(self) -> None:
        """A stream produced its first output (time to first token)."""
        if not self._first:
            self._first = True
            metrics.RELAY_TTFT_SECONDS.observe(time.perf_counter() - self.start, model=self.model)

    def finish(self, status: int, *, tokens_in: int = 0, tokens_out: int = 0, **attrs: Any) -> None:
        """End the span and record the request's status, latency and tokens."""
        metrics.RELAY_INFLIGHT.dec(route=self.route)
        span = self._span
        # the model is known once the body is read (``unknown`` at the start); one call, one lock
        attributes: dict[str, Any] = {"http.status_code": status, "model": self.model}
        if self._subject is not None:
            attributes[PRINCIPAL_ATTRIBUTE] = self._subject
        for key, value in attrs.items():
            if value is not None:
                attributes[f"mnemos.{key}"] = value if isinstance(value, (str, bool, int, float)) else str(value)
        span.set_attributes(attributes)
        span.end()
        metrics.observe_request(self.route, self.model, status, time.perf_counter() - self.start,
                                tokens_in=tokens_in, tokens_out=tokens_out)  # fmt: skip
