"""TRACE telemetry: OpenTelemetry spans in every process, one trace id across Ray calls.

::

    setup_tracing(settings, component="relay")         # once per process (else a lazy default)
    with span("relay.request", route="/v1/chat/completions", model="tiny"):
        ray.get(worker.run.remote(payload, carrier=inject()))   # {"traceparent": "00-…"}
    # in the callee, another process:
    with span("neuron.run", carrier=carrier): ...

Each finished span goes (1) to a bounded in-process buffer (``local_spans()``), (2) in batches,
from a background thread, to the named ``trace-collector`` actor when the process is connected to
Ray (``spans_for(trace_id)``), and (3) to an OTLP exporter only when ``trace.otlp_endpoint`` is set.
The hot path is a span, its JSON (what the buffer and the batches hold) and two deque appends;
nothing blocks on Ray or the network. ``start_span`` (the gateway's span of every request) records
its span without the SDK's when the SDK would only hand it to the shipper (no OTLP exporter, the
default sampler): the same JSON at a third of the cost.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider, sampling
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic_core import from_json, to_json

from mnemos._actors import TRACE_COLLECTOR
from mnemos._deps import require
from mnemos.errors import MissingDependencyError, UnavailableError, ValidationError
from mnemos.trace._actors import ensure_named, ray_connected
from mnemos.trace.metrics import TRACE_SPANS_DROPPED

__all__ = [
    "COLLECTOR_NAME",
    "PRINCIPAL_ATTRIBUTE",
    "SpanCollector",
    "current_trace_id",
    "ensure",
    "extract",
    "flush_spans",
    "inject",
    "join_carrier",
    "local_spans",
    "log_through_serve",
    "recent_spans",
    "setup_tracing",
    "shutdown_tracing",
    "span",
    "spans_for",
    "start_span",
    "tracing_info",
    "wait_spans",
]

COLLECTOR_NAME = TRACE_COLLECTOR
PRINCIPAL_ATTRIBUTE = "mnemos.principal"
"""The span attribute naming the subject a span acts for (a gateway request's caller, a run's starter):
the owner of that span and of its descendants in the trace (``mnemos.trace.http``). A subject only,
never a credential."""
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_PROPAGATOR = TraceContextTextMapPropagator()
_log = logging.getLogger(__name__)


def _span_dict(s: ReadableSpan) -> dict[str, Any]:
    """A finished span as plain data (what the collector stores and the HTTP API returns)."""
    ctx = s.get_span_context() or INVALID_SPAN_CONTEXT
    res = s.resource.attributes
    start, end = s.start_time or 0, s.end_time or 0
    return {
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{s.parent.span_id:016x}" if s.parent is not None else None,
        "name": s.name,
        "kind": s.kind.name,
        "service": res.get("service.name"),
        "component": res.get("mnemos.component"),
        "pid": res.get("process.pid"),
        "start_time": start / 1e9,
        "end_time": end / 1e9,
        "duration_ms": (end - start) / 1e6,
        "status": s.status.status_code.name,
        "status_message": s.status.description,
        "attributes": dict(s.attributes or {}),
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in s.events],
    }


class SpanCollector:
    """The named ``trace-collector`` actor: finished spans of every process, by trace id.

    Bounded: the oldest traces are evicted past ``max_traces`` or past ``max_spans`` spans in all (a
    pipeline of thousands of steps writes thousands of spans to one trace, so a count of traces alone
    bounds nothing); a trace keeps ``max_spans_per_trace``.
    An async actor: a reader waiting for a trace's spans (``spans_for`` with a ``timeout``) holds no
    thread, and at most ``max_waiting`` wait at once (the others are answered at once with what is in),
    so readers can never keep the processes' batches (``add``) waiting.
    Each span is kept as the JSON it arrived in and read only when asked for: a dict per span, up to
    ``max_spans`` of them, was millions of objects for the garbage collector to walk, and parsing
    every batch cost the collector more CPU than anything else it did, on the cores the traced
    requests needed.
    """

    def __init__(self, max_traces: int = 10_000, max_spans_per_trace: int = 2_000, max_waiting: int = 256,
                 max_spans: int = 200_000) -> None:  # fmt: skip
        self._traces: OrderedDict[str, list[bytes]] = OrderedDict()
        self._max_traces = max_traces
        self._max_per_trace = max_spans_per_trace
        self._max_spans = max_spans
        self._spans = 0
        self._max_waiting = max_waiting
        self._waiting = 0
        self._arrived: asyncio.Event | None = None  # set (and replaced) by every batch; made in the actor's loop
        self.dropped = 0

    async def add(self, spans: list[dict[str, Any]] | list[tuple[str, bytes]] | bytes) -> int:
        """Store a batch of spans: dicts, their JSON list, or ``(trace id, JSON)`` pairs as
        ``SpanShipper`` sends them. Returns how many were kept (the spans of a trace past its
        ``max_spans_per_trace`` are dropped and counted in ``mnemos_trace_spans_dropped_total``)."""
        if isinstance(spans, (bytes, bytearray)):
            spans = from_json(spans)
        kept = 0
        for s in spans:
            trace_id, doc = s if isinstance(s, tuple) else (s["trace_id"], to_json(s, fallback=str))
            bucket = self._traces.setdefault(trace_id, [])
            if len(bucket) >= self._max_per_trace:
                self.dropped += 1
                continue
            bucket.append(doc)
            kept += 1
        self._spans += kept
        if kept < len(spans):
            TRACE_SPANS_DROPPED.inc(len(spans) - kept)
        while len(self._traces) > self._max_traces or (self._spans > self._max_spans and len(self._traces) > 1):
            evicted = len(self._traces.popitem(last=False)[1])
            self._spans -= evicted
            self.dropped += evicted
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None
        return kept

    async def spans_for(self, trace_id: str, min_spans: int = 0, timeout: float = 0.0) -> list[dict[str, Any]]:
        """Spans of one trace by start time; waits up to ``timeout`` s until ``min_spans`` are in."""
        if timeout > 0 and len(self._traces.get(trace_id, ())) < min_spans and self._waiting < self._max_waiting:
            self._waiting += 1
            try:
                await asyncio.wait_for(self._wait_for(trace_id, min_spans), timeout)
            except asyncio.TimeoutError:
                pass
            finally:
                self._waiting -= 1
        return sorted(map(from_json, self._traces.get(trace_id, ())), key=lambda s: s["start_time"])

    async def _wait_for(self, trace_id: str, min_spans: int) -> None:
        while len(self._traces.get(trace_id, ())) < min_spans:
            if self._arrived is None:
                self._arrived = asyncio.Event()
            await self._arrived.wait()

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest ``limit`` spans across traces, oldest first."""
        out: list[bytes] = []
        for spans in reversed(self._traces.values()):
            out.extend(spans)
            if len(out) >= limit:
                break
        return sorted(map(from_json, out), key=lambda s: s["end_time"])[-limit:]

    async def stats(self) -> dict[str, int]:
        return {"traces": len(self._traces), "spans": self._spans, "dropped": self.dropped,
                "waiting": self._waiting}  # fmt: skip


def ensure(settings: Any = None, engram: Any = None) -> Any:
    """Get or create the detached ``trace-collector`` actor (``mnemos up`` calls this)."""
    return ensure_named(SpanCollector, COLLECTOR_NAME, max_concurrency=1_000)


class SpanShipper(SpanProcessor):
    """Keeps finished spans in a bounded buffer and ships them to the collector in batches.

    ``on_end`` encodes the span to JSON and appends it to two deques; a daemon thread sends them, a
    list of (trace id, JSON) per batch, every ``interval`` seconds (or at ``batch_size``), with at most
    ``max_inflight`` unacknowledged batches. Spans wait meanwhile; past ``max_pending`` waiting, the
    oldest are dropped and counted. No caller ever blocks on Ray.
    """

    def __init__(self, buffer_size: int = 2048, max_pending: int = 10_000, batch_size: int = 128,
                 interval: float = 0.5, max_inflight: int = 8) -> None:
        self.recent: deque[bytes] = deque(maxlen=buffer_size)
        self._pending: deque[tuple[str, bytes]] = deque(maxlen=max_pending)
        self._batch_size, self._interval, self._max_inflight = batch_size, interval, max_inflight
        self._inflight: list[Any] = []
        self._collector: Any = None
        self._ship_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="mnemos-span-shipper", daemon=True)
        self._thread.start()

    def on_end(self, span: ReadableSpan) -> None:
        # Kept as its JSON (one bytes object) rather than the SDK's objects: a span object holds a dozen
        # containers the garbage collector tracks, and thousands of them waiting to be shipped made the
        # gateway's collections frequent and long (a pass of 2-4 ms every few hundred requests).
        doc = _span_dict(span)
        self.keep(doc["trace_id"], to_json(doc, fallback=str))  # (an attribute no JSON holds: its text)

    def keep(self, trace_id: str, data: bytes) -> None:
        """Buffer one finished span's JSON and queue it for the collector."""
        self.recent.append(data)
        pending = self._pending
        if len(pending) == pending.maxlen:
            self.dropped += 1
            TRACE_SPANS_DROPPED.inc()
        pending.append((trace_id, data))
        if len(pending) >= self._batch_size:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.ship(wait=False)
            except Exception:  # noqa: BLE001 - telemetry never takes a process down
                _log.debug("span shipping failed", exc_info=True)

    def ship(self, wait: bool, timeout: float = 10.0) -> None:
        """Send what is pending; with ``wait``, until the collector has acknowledged every batch."""
        with self._ship_lock:
            if not ray_connected():
                self._pending.clear()  # kept in `recent`; nowhere else to send them
                return
            import ray

            while self._pending:
                if self._inflight:
                    done, self._inflight = ray.wait(self._inflight, num_returns=len(self._inflight), timeout=0)
                    self._check(done)
                if len(self._inflight) >= self._max_inflight:
                    if not wait:
                        break  # next tick; meanwhile `_pending` is bounded and drops the oldest
                    done, _ = ray.wait(self._inflight, num_returns=1, timeout=timeout)
                    if not done:
                        raise UnavailableError("the trace collector did not acknowledge in time")
                    continue
                count = min(len(self._pending), self._batch_size)
                batch = [self._pending.popleft() for _ in range(count)]  # (trace id, JSON) pairs
                if self._collector is None:
                    self._collector = ensure()
                self._inflight.append(self._collector.add.remote(batch))
            if wait and self._inflight:
                try:
                    ray.get(self._inflight, timeout=timeout)
                except Exception:  # noqa: BLE001 - a dead or restarting collector: a fresh handle next time
                    self._collector = None
                    raise
                finally:
                    self._inflight = []

    def _check(self, done: list[Any]) -> None:
        import ray

        try:
            ray.get(done, timeout=0)
        except Exception:  # noqa: BLE001 - the collector was killed: look it up again next batch
            self._collector = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            self.ship(wait=True, timeout=timeout_millis / 1000)
            return True
        except Exception:  # noqa: BLE001
            return False

    def shutdown(self) -> None:
        self._stopped = True
        self._wake.set()
        self.force_flush(5_000)


class _RecordedSpan(Span):
    """A span that ``start_span`` records straight into the shipper's JSON, without the SDK's span.

    Used where the shipper is the process's only span processor (no OTLP exporter) and the sampler is
    the default one: the gateway starts a span on every request, and the SDK's (attributes checked
    under a lock, a processor fan-out, a readable copy at the end) cost it more than the rest of its
    telemetry together. It reads as an SDK span reads (``name``, ``parent``, ``status`` …), so
    ``end`` hands it to the shipper's ``on_end`` and ``_span_dict`` writes its JSON, as for any span.
    """

    __slots__ = ("_attributes", "_context", "_end", "_events", "_kind", "_name", "_parent", "_start", "_state",
                 "_status", "_status_message")  # fmt: skip

    def __init__(self, state: _Tracing, name: str, parent: SpanContext | None, kind: SpanKind,
                 attributes: dict[str, Any]) -> None:  # fmt: skip
        ids = state.provider.id_generator
        trace_id = parent.trace_id if parent is not None else ids.generate_trace_id()
        self._context = SpanContext(trace_id, ids.generate_span_id(), is_remote=False,
                                    trace_flags=TraceFlags(TraceFlags.SAMPLED),
                                    trace_state=parent.trace_state if parent is not None else None)  # fmt: skip
        self._state, self._name, self._parent, self._kind = state, name, parent, kind
        self._attributes = attributes
        self._events: list[Event] = []
        self._status, self._status_message = StatusCode.UNSET, None
        self._end: int | None = None
        self._start = time.time_ns()

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end is None:
            for key, value in attributes.items():  # as the SDK keeps them: a sequence, None; else the text
                if isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
                    value = list(value)
                elif value is not None and not isinstance(value, (str, bool, int, float)):
                    value = str(value)
                self._attributes[key] = value

    def set_attribute(self, key: str, value: Any) -> None:
        self.set_attributes({key: value})

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        if self._end is None:
            self._events.append(Event(name, _clean(attributes or {})))

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end is not None or self._status is StatusCode.OK:  # OK is final, as in the SDK
            return
        if isinstance(status, Status):
            status, description = status.status_code, status.description
        if status is not StatusCode.UNSET:
            self._status, self._status_message = status, description if status is StatusCode.ERROR else None

    def record_exception(self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:  # fmt: skip
        trace = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
        self.add_event("exception", {"exception.type": type(exception).__qualname__,
                                     "exception.message": str(exception), "exception.stacktrace": trace,
                                     "exception.escaped": str(escaped), **(attributes or {})})  # fmt: skip

    def end(self, end_time: int | None = None) -> None:
        if self._end is None:
            self._end = end_time if end_time is not None else time.time_ns()
            self._state.shipper.on_end(self)  # type: ignore[arg-type]  # it reads as a ReadableSpan

    # -- read as ``_span_dict`` reads an SDK span ------------------------------------------------
    name = property(lambda self: self._name)
    kind = property(lambda self: self._kind)
    parent = property(lambda self: self._parent)
    start_time = property(lambda self: self._start)
    end_time = property(lambda self: self._end)
    attributes = property(lambda self: self._attributes)
    events = property(lambda self: self._events)
    resource = property(lambda self: self._state.provider.resource)
    status = property(lambda self: Status(self._status, self._status_message))


_DEFAULT_SAMPLER = sampling.ParentBased(sampling.ALWAYS_ON).get_description()


class _Tracing:
    def __init__(self, provider: TracerProvider, shipper: SpanShipper, component: str, service: str,
                 otlp_endpoint: str | None) -> None:
        self.provider, self.shipper = provider, shipper
        self.component, self.service, self.otlp_endpoint = component, service, otlp_endpoint
        self.pid = os.getpid()
        self.tracer = provider.get_tracer("mnemos")
        # ``start_span`` records its spans itself where the SDK would only hand them to the shipper
        self.recorded = otlp_endpoint is None and provider.sampler.get_description() == _DEFAULT_SAMPLER


_STATE: _Tracing | None = None
_SETUP_LOCK = threading.Lock()


def _otlp_processor(endpoint: str) -> SpanProcessor:
    exporter = require(
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        why=f"trace.otlp_endpoint ({endpoint}): the OTLP exporter",
        param="trace.otlp_endpoint",
    )
    OTLPSpanExporter = exporter.OTLPSpanExporter  # noqa: N806 - a class
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    insecure = not endpoint.startswith("https://")
    return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=insecure))


def log_through_serve() -> None:
    """In a Serve replica, send MNEMOS's log records to Serve's own handlers (the replica's log
    file, flushed at once on ERROR; their format, tracebacks included).

    Without it they reach the root logger and the replica's stderr, which Serve's high-throughput
    mode re-logs line by line at INFO into a buffer of 1,000 records that only an ERROR flushes:
    a 500 that said "see the gateway logs" was nowhere in them for minutes, and then unreadable.
    """
    serve_logger = logging.getLogger("ray.serve")
    ours = logging.getLogger("mnemos")
    if not serve_logger.handlers:
        return
    ours.handlers = list(serve_logger.handlers)
    ours.propagate = False
    if ours.level == logging.NOTSET:
        ours.setLevel(logging.INFO)


def setup_tracing(settings: Any = None, component: str | None = None, *, buffer_size: int = 2048) -> TracerProvider:
    """Set up this process's tracer provider (replacing an earlier one) and return it.

    Args:
        settings: ``Settings`` (default: ``load_settings()``); uses ``trace.service_name`` and
            ``trace.otlp_endpoint``.
        component: ``relay``, ``cortex``, ``neuron`` …; the service name is ``<service_name>-<component>``
            (default ``$MNEMOS_COMPONENT``, else just ``<service_name>``).
        buffer_size: finished spans kept in this process for ``local_spans()``.

    Raises:
        MissingDependencyError: an OTLP endpoint is configured and ``mnemos[otlp]`` is not installed.
    """
    global _STATE
    if settings is None:
        from mnemos.config import load_settings

        settings = load_settings()
    component = component or os.environ.get("MNEMOS_COMPONENT") or ""
    base = settings.trace.service_name
    service = f"{base}-{component}" if component else base
    endpoint = settings.trace.otlp_endpoint or None
    otlp = _otlp_processor(endpoint) if endpoint else None  # fail before replacing anything
    resource = Resource.create({
        "service.name": service,
        "service.namespace": "mnemos",
        "mnemos.component": component or base,
        "process.pid": os.getpid(),
    })
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    shipper = SpanShipper(buffer_size=buffer_size)
    provider.add_span_processor(shipper)
    if otlp is not None:
        provider.add_span_processor(otlp)
    with _SETUP_LOCK:
        old, _STATE = _STATE, _Tracing(provider, shipper, component or base, service, endpoint)
    if old is not None:
        old.provider.shutdown()
    return provider


_LAZY_LOCK = threading.Lock()


def _lazy_setup() -> _Tracing:
    """The default provider of a process that never called ``setup_tracing`` (never fails a caller)."""
    with _LAZY_LOCK:
        if _STATE is None:
            try:
                setup_tracing()
            except (MissingDependencyError, ValidationError) as exc:
                _log.warning("tracing falls back to defaults without export: %s", exc.message)
                from mnemos.config import Settings

                setup_tracing(Settings.model_construct())
        state = _STATE
    if state is None:  # shut down concurrently
        raise UnavailableError("tracing was shut down in this process")
    return state


def _tracer() -> Any:
    return (_STATE or _lazy_setup()).tracer


def shutdown_tracing() -> None:
    """Flush and shut down this process's provider (also at interpreter exit)."""
    global _STATE
    with _SETUP_LOCK:
        old, _STATE = _STATE, None
    if old is not None:
        old.provider.shutdown()


atexit.register(shutdown_tracing)


def _clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, bool, int, float)) else str(v) for k, v in attrs.items() if v is not None}


@contextmanager
def span(name: str, *, carrier: Mapping[str, str] | None = None, attributes: Mapping[str, Any] | None = None,
         kind: SpanKind = SpanKind.INTERNAL, **attrs: Any) -> Iterator[Span]:
    """A span around the block, current inside it; an exception marks it ERROR and propagates.

    Args:
        name: ``relay.request``, ``cortex.dispatch``, ``neuron.run`` …
        carrier: a W3C carrier from ``inject()`` in the caller (another process): this span
            becomes its child. Without one, the parent is the current span of this context.
        attributes: attributes whose keys are not identifiers (``{"http.route": …}``).
        **attrs: more attributes; ``None`` values are left out.
    """
    if attributes:
        attrs = {**attributes, **attrs}
    context = _from_carrier(carrier) if carrier else None
    with _tracer().start_as_current_span(name, context=context, kind=kind, attributes=_clean(attrs)) as current:
        yield current


def start_span(name: str, *, carrier: Mapping[str, str] | None = None, kind: SpanKind = SpanKind.INTERNAL,
               **attrs: Any) -> Span:
    """A span that is not made current and that the caller ends (``.end()``): for a stream that
    outlives the handler which started it. Parent: the carrier's span, else the current one."""
    context = _from_carrier(carrier) if carrier else None
    state = _STATE or _lazy_setup()
    if not state.recorded:
        return state.tracer.start_span(name, context=context, kind=kind, attributes=_clean(attrs))
    parent = otel_trace.get_current_span(context).get_span_context()
    if not parent.is_valid:
        return _RecordedSpan(state, name, None, kind, _clean(attrs))
    if not parent.trace_flags.sampled:  # a local parent not sampled: neither is its child (the default sampler)
        ids = state.provider.id_generator
        return NonRecordingSpan(SpanContext(parent.trace_id, ids.generate_span_id(), is_remote=False,
                                            trace_flags=parent.trace_flags, trace_state=parent.trace_state))
    return _RecordedSpan(state, name, parent, kind, _clean(attrs))


def inject(carrier: dict[str, str] | None = None, *, from_span: Span | None = None) -> dict[str, str]:
    """A W3C carrier (``{"traceparent": …}``) of the current span, or of ``from_span``; ``{}`` outside a span."""
    carrier = {} if carrier is None else carrier
    context = otel_trace.set_span_in_context(from_span) if from_span is not None else None
    _PROPAGATOR.inject(carrier, context=context)
    return carrier


def join_carrier(trace_id: str) -> dict[str, str]:
    """A W3C carrier whose span starts in trace ``trace_id`` as a root (its parent, a fresh span id,
    is no span of the trace): for work that has a trace id but no live parent span (a SYNKRON run).
    ``{}`` (a span in the current trace, else a new one) when ``trace_id`` is not a trace id."""
    if not isinstance(trace_id, str) or not _TRACE_ID.fullmatch(trace_id) or trace_id == "0" * 32:
        return {}
    return {"traceparent": f"00-{trace_id}-{(int.from_bytes(os.urandom(8), 'big') or 1):016x}-01"}


def extract(carrier: Mapping[str, str] | None) -> Context:
    """An OpenTelemetry context whose parent is the carrier's span (a malformed carrier: a new root)."""
    if carrier is not None and not isinstance(carrier, Mapping):
        raise ValidationError("a trace carrier must be a mapping like {'traceparent': '00-…'}", param="carrier")
    return _from_carrier(carrier or {})


def _from_carrier(carrier: Mapping[str, str]) -> Context:
    """A context whose parent is the carrier's span, sampled whatever the carrier's flags say: a client's
    ``traceparent`` ending ``-00`` (not sampled) still has its request traced like every request, or a
    caller would choose to leave no spans of its own work for operators to read."""
    if "traceparent" not in carrier:  # what ``extract`` gives for it, without its work (each gateway request)
        return Context()
    context = _PROPAGATOR.extract(carrier)
    parent = otel_trace.get_current_span(context).get_span_context()
    if parent.is_valid and not parent.trace_flags.sampled:
        sampled = SpanContext(parent.trace_id, parent.span_id, is_remote=True, trace_state=parent.trace_state,
                              trace_flags=TraceFlags(parent.trace_flags | TraceFlags.SAMPLED))  # fmt: skip
        context = otel_trace.set_span_in_context(NonRecordingSpan(sampled), context)
    return context


def current_trace_id() -> str | None:
    """The 32-hex trace id of the current span, or ``None`` outside a span."""
    ctx = otel_trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def tracing_info() -> dict[str, Any]:
    """How this process traces: service, component, OTLP endpoint (``None``: no export), buffer state."""
    state = _STATE
    if state is None:
        return {"configured": False, "service": None, "component": None, "otlp_endpoint": None,
                "buffered": 0, "dropped": 0}
    return {"configured": True, "service": state.service, "component": state.component,
            "otlp_endpoint": state.otlp_endpoint, "buffered": len(state.shipper.recent),
            "dropped": state.shipper.dropped}


def local_spans(trace_id: str | None = None) -> list[dict[str, Any]]:
    """Finished spans still in this process's buffer (all, or those of one trace)."""
    state = _STATE
    if state is None:
        return []
    spans = [from_json(s) for s in list(state.shipper.recent)]
    return [s for s in spans if trace_id is None or s["trace_id"] == trace_id]


def flush_spans(timeout: float = 10.0) -> None:
    """Ship this process's pending spans now and wait for the collector to acknowledge them."""
    state = _STATE
    if state is not None:
        state.shipper.ship(wait=True, timeout=timeout)


def _check_trace_id(trace_id: str) -> str:
    if not isinstance(trace_id, str) or not _TRACE_ID.fullmatch(trace_id) or trace_id == "0" * 32:
        shown = f"{str(trace_id)[:40]!r}{'…' if len(str(trace_id)) > 40 else ''}"  # never echo 50 KB back
        raise ValidationError(f"trace id must be 32 lowercase hex digits, got {shown}", param="trace_id")
    return trace_id


def _without_ray(trace_id: str) -> list[dict[str, Any]] | None:
    """``trace_id`` checked; this process's spans of it by start time when it is not connected to Ray
    (None when it is: the collector has them)."""
    _check_trace_id(trace_id)
    return None if ray_connected() else sorted(local_spans(trace_id), key=lambda s: s["start_time"])


def spans_for(trace_id: str, *, min_spans: int = 0, timeout: float = 0.0) -> list[dict[str, Any]]:
    """Spans of one trace from every process (the collector), ordered by start time.

    Flushes this process's spans first. Waits up to ``timeout`` s until ``min_spans`` are in.
    Without Ray, reads this process's buffer.

    Raises:
        ValidationError: ``trace_id`` is not 32 hex digits.
        UnavailableError: the collector could not be reached.
    """
    if (local := _without_ray(trace_id)) is not None:
        return local
    import ray

    try:
        flush_spans()
        return ray.get(ensure().spans_for.remote(trace_id, min_spans, timeout), timeout=timeout + 30)
    except Exception as exc:  # noqa: BLE001
        raise UnavailableError(f"the trace collector is not reachable: {type(exc).__name__}") from None


_READER: Any = None
"""The collector's handle ``wait_spans`` reads through."""


async def wait_spans(trace_id: str, *, min_spans: int = 0, timeout: float = 0.0) -> list[dict[str, Any]]:
    """``spans_for`` for a coroutine (the gateway's ``GET /v1/traces/{id}``): the wait for ``min_spans``
    holds no thread of the caller's, so readers waiting cannot take the threads its other work needs.

    Raises:
        ValidationError: ``trace_id`` is not 32 hex digits.
        UnavailableError: the collector could not be reached.
    """
    if (local := _without_ray(trace_id)) is not None:
        return local

    global _READER
    try:
        await asyncio.to_thread(flush_spans)  # quick: this process's pending spans
        if _READER is None:  # looked up once (a lookup is a call to Ray's GCS), again after a failure
            _READER = await asyncio.to_thread(ensure)
        spans: list[dict[str, Any]] = await asyncio.wait_for(
            _READER.spans_for.remote(trace_id, min_spans, timeout), timeout + 30)  # fmt: skip
        return spans
    except Exception as exc:  # noqa: BLE001
        _READER = None
        raise UnavailableError(f"the trace collector is not reachable: {type(exc).__name__}") from None


def recent_spans(limit: int = 100) -> list[dict[str, Any]]:
    """The latest spans of the cluster (the collector), or of this process without Ray."""
    if not ray_connected():
        return local_spans()[-limit:]
    import ray

    flush_spans()
    return ray.get(ensure().recent.remote(limit), timeout=30)
