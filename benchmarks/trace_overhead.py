"""Cost of TRACE on the gateway's hot path: its span, the carrier, request metrics (µs per request).

    python benchmarks/trace_overhead.py [--quick] [--ray]

``gateway_request()`` runs what the gateway runs per request, the real code path:
``mnemos.relay._telemetry.RequestTelemetry`` (the ``relay.request`` span, a trace of its own as
most clients send no ``traceparent``; the caller's subject; the carrier for the model deployment; the in-flight gauge;
request, latency and token metrics). The target is <= 200 µs of the ≤ 2 ms the issue allows for
auth, rate limit and tracing together. ``ship_per_span`` is the background thread's cost per
finished span (its batch pickled as a Ray call pickles it), paid off the request path. With
``--ray`` (default without ``--quick``) the spans are also shipped to a live collector while the
hot path is measured, and the metrics flusher pushes to the live aggregator.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import target  # noqa: E402
from starlette.datastructures import Headers  # noqa: E402

from mnemos.config import Settings  # noqa: E402
from mnemos.relay._telemetry import RequestTelemetry  # noqa: E402
from mnemos.soul.identity import Principal  # noqa: E402
from mnemos.trace import metrics, telemetry  # noqa: E402
from mnemos.trace.telemetry import inject, span, start_span  # noqa: E402

ROUTE, MODEL = "/v1/chat/completions", "tiny-llama"
HEADERS = Headers({"content-type": "application/json", "authorization": "Bearer mk_bench"})
CALLER = Principal(subject="bench", role="developer", kind="apikey")


def gateway_request() -> dict[str, str]:
    """The telemetry of one gateway request, as ``Handlers.generate`` drives it."""
    request = RequestTelemetry(ROUTE, "unknown", HEADERS)
    request.model = MODEL  # known once the body is read
    request.caller(CALLER)
    carrier = request.carrier()  # goes to the model deployment with the request
    request.finish(200, tokens_in=12, tokens_out=48)
    return carrier


def per_call_us(fn: Callable[[], object], n: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean µs per call of ``fn`` run ``n`` times."""
    results = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        results.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(results)


def _span_only() -> None:
    start_span("relay.request", carrier=HEADERS, route=ROUTE, model=MODEL).end()


def _metrics_only() -> None:
    metrics.observe_request(ROUTE, MODEL, 200, 0.012, tokens_in=12, tokens_out=48)


def ship_per_span_us(n: int) -> float:
    """Background cost per span: its batch of (trace id, JSON) pickled, as the shipper's Ray call does."""
    provider = telemetry.setup_tracing(Settings.model_construct(), component="bench", buffer_size=n)
    for _ in range(n):
        _span_only()
    finished = list(telemetry._STATE.shipper.recent)  # noqa: SLF001 - the benchmark reads the buffer
    trace_id = os.urandom(16).hex()
    t = time.perf_counter()
    for i in range(0, len(finished), 128):  # the shipper's batch size
        pickle.dumps([(trace_id, data) for data in finished[i:i + 128]])
    provider.shutdown()
    return (time.perf_counter() - t) / len(finished) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no Ray (under a minute)")
    parser.add_argument("--ray", action="store_true", help="ship to a live collector while measuring")
    args = parser.parse_args()
    n, rounds = (2_000, 3) if args.quick else (10_000, 7)
    use_ray = args.ray or not args.quick

    ship_us = ship_per_span_us(n)
    if use_ray:
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="mnemos", log_to_driver=False)
    telemetry.setup_tracing(Settings.model_construct(), component="bench")
    try:
        for fn in (gateway_request, _span_only, _metrics_only):  # warm up
            per_call_us(fn, 200, 1)
        span_us = per_call_us(_span_only, n, rounds)
        metrics_us = per_call_us(_metrics_only, n, rounds)
        with span("outer"):
            inject_us = per_call_us(inject, n, rounds)
        hot_us = per_call_us(gateway_request, n, rounds)
        if use_ray:
            telemetry.flush_spans(timeout=60)
            metrics.flush(timeout=60)
            stats = ray.get(telemetry.ensure().stats.remote())
            shipper_dropped = telemetry.tracing_info()["dropped"]
            print(f"info collector holds {stats['traces']} traces, {stats['spans']} spans; evicted {stats['dropped']};"
                  f" dropped before shipping {shipper_dropped}")
    finally:
        telemetry.shutdown_tracing()
        if use_ray:
            ray.shutdown()
    print(f"info mode {'ray: shipping to the collector' if use_ray else 'in-process, no Ray'}")
    print(f"us span_only {span_us:.1f}")
    print(f"us metrics_record {metrics_us:.1f}")
    print(f"us inject {inject_us:.1f}")
    print(f"us ship_per_span {ship_us:.1f} (background thread, off the request path)")
    print(target("us", "trace_hot_path", hot_us, "<=", 200))


if __name__ == "__main__":
    main()
