"""TRACE metrics: one Prometheus catalogue for every component, served cluster-wide.

Every process records locally (a dict update under one uncontended lock); a daemon thread pushes
the deltas every second (and at exit) to the named ``metrics`` aggregator actor. ``render()``
returns the cluster-wide Prometheus text: counters and histograms summed over every process that
ever reported, gauges as the sum of each live process's last value (a process silent for
``GAUGE_TTL`` s, or one that exited, no longer counts)::

    from mnemos.trace import metrics
    metrics.observe_request("/v1/chat/completions", "tiny", 200, 0.012, tokens_in=9, tokens_out=32)
    metrics.CORTEX_QUEUE_DEPTH.set(4, queue="default", pool="cpu-a")
    metrics.NEURON_WORKER_RESTARTS.inc(pool="cpu-a")

A restart of the aggregator resets the counters (Prometheus' ``rate()`` handles resets).
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import logging
import os
import threading
import time
import uuid
from typing import Any, NamedTuple

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from mnemos._actors import METRICS
from mnemos.errors import UnavailableError
from mnemos.trace._actors import ensure_named, ray_connected

__all__ = [
    "AGGREGATOR_NAME", "CATALOGUE", "CONTENT_TYPE_LATEST", "CORTEX_QUEUE_DEPTH", "CORTEX_RETRIES",
    "CORTEX_RUNNING_JOBS", "JOBS", "JOB_SECONDS", "NEURON_GENERATE_SECONDS", "NEURON_WORKERS",
    "NEURON_WORKER_RESTARTS", "RATELIMITED", "RELAY_AUTH_FAILURES", "RELAY_INFLIGHT", "RELAY_REQUESTS",
    "RELAY_REQUEST_SECONDS", "RELAY_TTFT_SECONDS", "SYNKRON_STEPS", "TOKENS", "TRACE_SPANS_DROPPED",
    "WRAITH_CRON_RUNS", "Counter", "Gauge", "Histogram", "MetricSpec", "MetricsAggregator", "collect",
    "counter", "ensure", "flush", "gauge", "histogram", "local_snapshot", "observe_request",
    "record_tokens", "render", "render_snapshot",
]

AGGREGATOR_NAME = METRICS
FLUSH_INTERVAL = 1.0
GAUGE_HEARTBEAT = 10.0
GAUGE_TTL = 45.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
JOB_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_log = logging.getLogger(__name__)
_LOCK = threading.Lock()
SOURCE = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


class MetricSpec(NamedTuple):
    """What a metric is: name, ``counter``/``gauge``/``histogram``, help, label names, buckets."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


class _Metric:
    __slots__ = ("spec", "_values")

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self._values: dict[tuple[str, ...], Any] = {}

    def _key(self, labels: dict[str, Any]) -> tuple[str, ...]:
        names = self.spec.labels
        if len(labels) == len(names):
            try:
                return tuple([str(labels[n]) for n in names])  # as many, each found: the same names
            except KeyError:
                pass
        raise ValueError(f"{self.spec.name} takes labels {list(names)}, got {sorted(labels)}")

    def value(self, **labels: Any) -> Any:
        """This process's value for one label set (a copy for histograms)."""
        with _LOCK:
            v = self._values.get(self._key(labels))
        return list(v) if isinstance(v, list) else (v or 0.0)


class Counter(_Metric):
    """Monotonic count; ``inc(amount, **labels)``."""

    __slots__ = ()

    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        if amount < 0:
            raise ValueError(f"{self.spec.name} is a counter: cannot add {amount}")
        key = self._key(labels)
        values = self._values
        with _LOCK:
            values[key] = values.get(key, 0.0) + amount
        if _FLUSHER is None:
            _start_flusher()


class Gauge(_Metric):
    """A level set by this process (``set``/``inc``/``dec``); summed across live processes."""

    __slots__ = ()

    def set(self, value: float, **labels: Any) -> None:
        key = self._key(labels)
        with _LOCK:
            self._values[key] = float(value)
        if _FLUSHER is None:
            _start_flusher()

    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        key = self._key(labels)
        values = self._values
        with _LOCK:
            values[key] = values.get(key, 0.0) + amount
        if _FLUSHER is None:
            _start_flusher()

    def dec(self, amount: float = 1.0, **labels: Any) -> None:
        self.inc(-amount, **labels)


class Histogram(_Metric):
    """Distribution in fixed buckets; stored as ``[per-bucket counts…, +Inf count, sum, count]``."""

    __slots__ = ()

    def observe(self, value: float, **labels: Any) -> None:
        key = self._key(labels)
        bounds = self.spec.buckets
        index = bisect.bisect_left(bounds, value)
        values = self._values
        with _LOCK:
            row = values.get(key)
            if row is None:
                row = values[key] = [0.0] * (len(bounds) + 3)
            row[index] += 1.0
            row[-2] += value
            row[-1] += 1.0
        if _FLUSHER is None:
            _start_flusher()


_KINDS: dict[str, type[_Metric]] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
_REGISTRY: dict[str, _Metric] = {}


def _register(spec: MetricSpec) -> Any:
    if spec.kind == "histogram" and list(spec.buckets) != sorted(set(spec.buckets)):
        raise ValueError(f"{spec.name}: buckets must be increasing and distinct")
    with _LOCK:
        metric = _REGISTRY.get(spec.name)
        if metric is None:
            metric = _REGISTRY[spec.name] = _KINDS[spec.kind](spec)
    if metric.spec != spec:
        raise ValueError(f"metric {spec.name} is already registered as {metric.spec}")
    return metric


def counter(name: str, help: str, labels: tuple[str, ...] = ()) -> Counter:
    """Get or register a counter (a name ending in ``_total``)."""
    return _register(MetricSpec(name, "counter", help, tuple(labels)))


def gauge(name: str, help: str, labels: tuple[str, ...] = ()) -> Gauge:
    """Get or register a gauge."""
    return _register(MetricSpec(name, "gauge", help, tuple(labels)))


def histogram(name: str, help: str, labels: tuple[str, ...] = (),
              buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
    """Get or register a histogram."""
    return _register(MetricSpec(name, "histogram", help, tuple(labels), tuple(float(b) for b in buckets)))


# -- the catalogue ----------------------------------------------------------------------------
RELAY_REQUESTS = counter(
    "mnemos_relay_requests_total", "Gateway requests by route template, model and HTTP status.",
    ("route", "model", "status"))
RELAY_REQUEST_SECONDS = histogram(
    "mnemos_relay_request_seconds", "Gateway request latency in seconds.", ("route", "model"))
RELAY_TTFT_SECONDS = histogram(
    "mnemos_relay_time_to_first_token_seconds", "Streaming: seconds to the first token.", ("model",))
RELAY_INFLIGHT = gauge("mnemos_relay_inflight_requests", "Gateway requests being served now.", ("route",))
RELAY_AUTH_FAILURES = counter(
    "mnemos_relay_auth_failures_total", "Requests refused by authentication or authorization.", ("reason",))
TOKENS = counter("mnemos_tokens_total", "Tokens in (prompt) and out (completion) by model.", ("model", "direction"))
RATELIMITED = counter("mnemos_ratelimited_total", "Requests refused by the rate limit (429).", ("principal_kind",))
CORTEX_QUEUE_DEPTH = gauge(
    "mnemos_cortex_queue_depth", "Jobs waiting in a CORTEX queue, by the pool they go to.", ("queue", "pool"))
CORTEX_RUNNING_JOBS = gauge("mnemos_cortex_running_jobs", "Jobs of a queue running now.", ("queue",))
CORTEX_RETRIES = counter("mnemos_cortex_retries_total", "Job attempts retried after a failure.", ("queue",))
JOBS = counter(
    "mnemos_jobs_total", "Job attempts by queue and how they went (started, succeeded, failed).", ("queue", "status"))
JOB_SECONDS = histogram("mnemos_job_seconds", "Job run time in seconds (one attempt).", ("queue",), JOB_BUCKETS)
NEURON_WORKER_RESTARTS = counter(
    "mnemos_neuron_worker_restarts_total", "NEURON workers replaced after they died.", ("pool",))
NEURON_WORKERS = gauge("mnemos_neuron_workers", "NEURON workers alive by pool.", ("pool",))
NEURON_GENERATE_SECONDS = histogram(
    "mnemos_neuron_generate_seconds", "Model runtime seconds per generate/embed call.", ("model", "runtime"))
SYNKRON_STEPS = counter("mnemos_synkron_steps_total", "Pipeline steps by outcome (ran, cached, failed).", ("status",))
WRAITH_CRON_RUNS = counter(
    "mnemos_wraith_cron_runs_total", "WRAITH task runs by job and how they ended (succeeded, failed, skipped).",
    ("job", "status"))
TRACE_SPANS_DROPPED = counter("mnemos_trace_spans_dropped_total", "Finished spans dropped because a buffer was full.")
CATALOGUE: tuple[MetricSpec, ...] = tuple(m.spec for m in _REGISTRY.values())


def observe_request(route: str, model: str, status: int | str, seconds: float, *, tokens_in: int = 0,
                    tokens_out: int = 0) -> None:
    """Record one gateway request (``route`` is the route template, not the raw path)."""
    RELAY_REQUESTS.inc(route=route, model=model, status=status)
    RELAY_REQUEST_SECONDS.observe(seconds, route=route, model=model)
    if tokens_in or tokens_out:
        record_tokens(model, tokens_in, tokens_out)


def record_tokens(model: str, tokens_in: int, tokens_out: int) -> None:
    """Add prompt (``in``) and completion (``out``) tokens of one model."""
    if tokens_in:
        TOKENS.inc(tokens_in, model=model, direction="in")
    if tokens_out:
        TOKENS.inc(tokens_out, model=model, direction="out")


# -- the aggregator ---------------------------------------------------------------------------
Series = dict[str, dict[tuple[str, ...], Any]]


class MetricsAggregator:
    """The named ``metrics`` actor: the cluster-wide sum of what every process pushes."""

    def __init__(self, gauge_ttl: float = GAUGE_TTL) -> None:
        self.epoch = uuid.uuid4().hex
        self._ttl = gauge_ttl
        self._specs: dict[str, MetricSpec] = {}
        self._counters: Series = {}
        self._histograms: Series = {}
        self._gauges: dict[str, Series] = {}  # source -> its last gauge values
        self._seen: dict[str, float] = {}
        self._version = 0
        self._cond = threading.Condition()

    def push(self, source: str, specs: dict[str, MetricSpec] | None, counters: Series, histograms: Series,
             gauges: Series | None, retire: bool = False) -> str:
        """Add counter and histogram deltas, replace the source's gauges; returns this aggregator's epoch."""
        with self._cond:
            self._specs.update(specs or {})
            for name, series in counters.items():
                target = self._counters.setdefault(name, {})
                for key, delta in series.items():
                    target[key] = target.get(key, 0.0) + delta
            for name, series in histograms.items():
                target = self._histograms.setdefault(name, {})
                for key, delta in series.items():
                    row = target.get(key)
                    if row is None or len(row) != len(delta):
                        target[key] = list(delta)
                    else:
                        target[key] = [a + b for a, b in zip(row, delta, strict=True)]
            if gauges is not None:
                self._gauges[source] = gauges
            if retire:
                self._gauges.pop(source, None)
                self._seen.pop(source, None)
            else:
                self._seen[source] = time.monotonic()
            self._version += 1
            self._cond.notify_all()
        return self.epoch

    def snapshot(self, since_version: int = -1, timeout: float = 0.0) -> dict[str, Any]:
        """The cluster-wide state; waits up to ``timeout`` s for a version newer than ``since_version``."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > since_version, timeout=timeout)
            horizon = time.monotonic() - self._ttl
            for source in [s for s, ts in self._seen.items() if ts < horizon]:
                self._seen.pop(source)
                self._gauges.pop(source, None)
            gauges: Series = {}
            for series_of_source in self._gauges.values():
                for name, series in series_of_source.items():
                    target = gauges.setdefault(name, {})
                    for key, value in series.items():
                        target[key] = target.get(key, 0.0) + value
            return {
                "epoch": self.epoch, "version": self._version, "sources": len(self._seen),
                "specs": dict(self._specs),
                "counters": {n: dict(s) for n, s in self._counters.items()},
                "histograms": {n: {k: list(v) for k, v in s.items()} for n, s in self._histograms.items()},
                "gauges": gauges,
            }


def ensure(settings: Any = None, engram: Any = None) -> Any:
    """Get or create the detached ``metrics`` aggregator actor (``mnemos up`` calls this)."""
    return ensure_named(MetricsAggregator, AGGREGATOR_NAME, max_concurrency=16)


def _copy_values() -> tuple[Series, Series, Series]:
    counters: Series = {}
    histograms: Series = {}
    gauges: Series = {}
    with _LOCK:
        for name, metric in _REGISTRY.items():
            if not metric._values:
                continue
            if metric.spec.kind == "histogram":
                histograms[name] = {k: list(v) for k, v in metric._values.items()}
            else:
                (gauges if metric.spec.kind == "gauge" else counters)[name] = dict(metric._values)
    return counters, histograms, gauges


def _deltas(current: Series, sent: Series, rows: bool) -> Series:
    out: Series = {}
    for name, series in current.items():
        before = sent.get(name, {})
        for key, value in series.items():
            old = before.get(key)
            if rows:
                if old is None or len(old) != len(value):
                    delta = value
                else:
                    delta = [a - b for a, b in zip(value, old, strict=True)]
                changed = bool(delta[-1])
            else:
                delta = value - (old or 0.0)
                changed = delta != 0
            if changed:
                out.setdefault(name, {})[key] = delta
    return out


class _Flusher:
    """Pushes this process's deltas to the aggregator every ``interval`` s from a daemon thread."""

    def __init__(self, interval: float = FLUSH_INTERVAL) -> None:
        self._sent: tuple[Series, Series, Series] = ({}, {}, {})
        self._epoch: str | None = None
        self._aggregator: Any = None
        self._retired = False
        self._specs_sent = 0
        self._gauges_at = 0.0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="mnemos-metrics-flusher", daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            try:
                self.push()
            except Exception:  # noqa: BLE001 - telemetry never takes a process down; retried next tick
                _log.debug("metrics push failed", exc_info=True)

    def push(self, retire: bool = False, timeout: float = 10.0) -> bool:
        """Send what changed; ``False`` when this process is not connected to Ray."""
        with self._lock:
            if not ray_connected():
                return False
            import ray

            counters, histograms, gauges = _copy_values()
            full = self._epoch is None or self._specs_sent != len(_REGISTRY)
            stale = time.monotonic() - self._gauges_at > GAUGE_HEARTBEAT
            gauges_due = not self._retired and (full or retire or stale or gauges != self._sent[2])
            c_delta = _deltas(counters, self._sent[0], rows=False)
            h_delta = _deltas(histograms, self._sent[1], rows=True)
            if not (c_delta or h_delta or (gauges_due and (gauges or retire))):
                return True
            specs = {name: m.spec for name, m in list(_REGISTRY.items())} if full else None
            if self._aggregator is None:
                self._aggregator = ensure()
            pushed = self._aggregator.push.remote(
                SOURCE, specs, c_delta, h_delta, gauges if gauges_due else None, retire)
            try:
                epoch = ray.get(pushed, timeout=timeout)
            except Exception:
                self._aggregator = None  # a fresh handle next time; the deltas stay unsent
                raise
            self._sent = (counters, histograms, gauges)
            if gauges_due:
                self._gauges_at = time.monotonic()
            self._retired = self._retired or retire
            if specs is not None:
                self._specs_sent = len(specs)
            restarted = self._epoch is not None and epoch != self._epoch
            self._epoch = None if restarted else epoch  # a restarted aggregator gets specs and gauges again
        return self.push(retire, timeout) if restarted and not retire else True

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(Exception):  # at exit the cluster may be gone
            self.push(retire=True, timeout=2.0)


_FLUSHER: _Flusher | None = None
_FLUSHER_LOCK = threading.Lock()


def _start_flusher() -> _Flusher:
    global _FLUSHER
    with _FLUSHER_LOCK:
        if _FLUSHER is None:
            _FLUSHER = _Flusher()
            atexit.register(_FLUSHER.stop)
        return _FLUSHER


def flush(timeout: float = 10.0, *, retire: bool = False) -> bool:
    """Push this process's changes now and wait for the aggregator; ``False`` without Ray.

    ``retire=True``: this process stops counting for gauges (a worker that is shutting down).
    """
    return (_FLUSHER or _start_flusher()).push(retire=retire, timeout=timeout)


# -- exposition -------------------------------------------------------------------------------
def local_snapshot() -> dict[str, Any]:
    """This process's values, in the aggregator's snapshot shape."""
    counters, histograms, gauges = _copy_values()
    specs = {name: metric.spec for name, metric in list(_REGISTRY.items())}
    return {"epoch": None, "version": 0, "sources": 1, "specs": specs, "counters": counters,
            "histograms": histograms, "gauges": gauges}


def collect(since_version: int = -1, timeout: float = 0.0) -> dict[str, Any]:
    """The cluster-wide snapshot (after pushing this process's changes).

    Raises:
        UnavailableError: not connected to Ray, or the aggregator could not be reached.
    """
    if not ray_connected():
        raise UnavailableError("cluster-wide metrics need a Ray connection (mnemos.connect())")
    import ray

    try:
        flush()
        return ray.get(ensure().snapshot.remote(since_version, timeout), timeout=timeout + 30)
    except Exception as exc:  # noqa: BLE001
        raise UnavailableError(f"the metrics aggregator is not reachable: {type(exc).__name__}") from None


class _SnapshotCollector:
    """A prometheus_client collector over one snapshot, so the text format is exactly Prometheus'."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Any:
        snap = self.snapshot
        specs = {**{s.name: s for s in CATALOGUE}, **{n: MetricSpec(*s) for n, s in snap["specs"].items()}}
        for name in sorted(specs):
            spec = specs[name]
            labels = list(spec.labels)
            if spec.kind == "histogram":
                family: Any = HistogramMetricFamily(name, spec.help, labels=labels)
                for key, row in sorted(snap["histograms"].get(name, {}).items()):
                    if len(row) != len(spec.buckets) + 3:
                        continue  # recorded under other buckets by an older version
                    cumulative, buckets = 0.0, []
                    for bound, count in zip(spec.buckets, row[:-3], strict=True):
                        cumulative += count
                        buckets.append((floatToGoString(bound), cumulative))
                    buckets.append(("+Inf", row[-1]))
                    family.add_metric(list(key), buckets, sum_value=row[-2])
            else:
                kind = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
                family = kind(name, spec.help, labels=labels)
                source = snap["counters"] if spec.kind == "counter" else snap["gauges"]
                for key, value in sorted(source.get(name, {}).items()):
                    family.add_metric(list(key), value)
            yield family
        sources = GaugeMetricFamily("mnemos_metrics_sources", "Processes whose metrics are included.")
        sources.add_metric([], snap["sources"])
        yield sources


def render_snapshot(snapshot: dict[str, Any]) -> bytes:
    """Prometheus text exposition (``CONTENT_TYPE_LATEST``) of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)


def render(cluster: bool | None = None) -> bytes:
    """Prometheus text of the whole cluster (default when connected to Ray), else of this process."""
    if cluster is None:
        cluster = ray_connected()
    return render_snapshot(collect() if cluster else local_snapshot())
