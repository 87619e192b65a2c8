"""TRACE metrics: recorded in several processes, summed by the aggregator, valid Prometheus text."""

from __future__ import annotations

import os
import uuid
from collections import defaultdict

import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families

from mnemos.trace import metrics


def _parse(text: bytes) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text.decode())}


def _value(families: dict, family: str, sample: str, **labels: str) -> float | None:
    for s in families[family].samples:
        if s.name == sample and s.labels == labels:
            return s.value
    return None


def _check_histograms(families: dict) -> int:
    """Every histogram series: cumulative buckets non-decreasing, +Inf == _count. Returns series seen."""
    seen = 0
    for family in families.values():
        if family.type != "histogram":
            continue
        buckets: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
        counts: dict[tuple, float] = {}
        for s in family.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            if s.name.endswith("_bucket"):
                buckets[key].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                counts[key] = s.value
        for key, series in buckets.items():
            values = [v for _, v in sorted(series)]
            assert values == sorted(values), f"{family.name}{key}: buckets decrease"
            assert sorted(series)[-1] == (float("inf"), counts[key])
            seen += 1
    return seen


@ray.remote(num_cpus=0)
class _Recorder:
    """A process that records metrics like a gateway replica and a CORTEX would."""

    def record(self, model: str, queue: str, requests: int, depth: float, latency: float) -> int:
        for _ in range(requests):
            metrics.observe_request("/v1/chat/completions", model, 200, latency, tokens_in=3, tokens_out=5)
        metrics.RATELIMITED.inc(principal_kind=model)
        metrics.CORTEX_QUEUE_DEPTH.set(depth, queue=queue, pool="cpu-a")
        metrics.CORTEX_RETRIES.inc(2, queue=queue)
        metrics.NEURON_WORKER_RESTARTS.inc(pool=queue)
        metrics.JOBS.inc(queue=queue, status="succeeded")
        # A metric only this process knows: its spec travels to the aggregator.
        metrics.counter("mnemos_test_actor_only_total", "Registered in actors only.", ("queue",)).inc(queue=queue)
        return os.getpid()

    def flush(self, retire: bool = False) -> bool:
        return metrics.flush(retire=retire)


def test_two_processes_summed_in_render(ray_cluster) -> None:
    model, queue = f"m-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    a, b = _Recorder.remote(), _Recorder.remote()
    pids = ray.get([a.record.remote(model, queue, 3, 3, 0.004), b.record.remote(model, queue, 2, 4, 0.2)])
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert ray.get([a.flush.remote(), b.flush.remote()]) == [True, True]

    families = _parse(metrics.render())
    for spec in metrics.CATALOGUE:
        assert spec.name.removesuffix("_total") in families, spec.name
    route = {"route": "/v1/chat/completions", "model": model}
    assert _value(families, "mnemos_relay_requests", "mnemos_relay_requests_total", **route, status="200") == 5
    assert _value(families, "mnemos_tokens", "mnemos_tokens_total", model=model, direction="in") == 15
    assert _value(families, "mnemos_tokens", "mnemos_tokens_total", model=model, direction="out") == 25
    assert _value(families, "mnemos_ratelimited", "mnemos_ratelimited_total", principal_kind=model) == 2
    assert _value(families, "mnemos_cortex_queue_depth", "mnemos_cortex_queue_depth", queue=queue, pool="cpu-a") == 7
    assert _value(families, "mnemos_cortex_retries", "mnemos_cortex_retries_total", queue=queue) == 4
    assert _value(families, "mnemos_neuron_worker_restarts", "mnemos_neuron_worker_restarts_total", pool=queue) == 2
    assert _value(families, "mnemos_jobs", "mnemos_jobs_total", queue=queue, status="succeeded") == 2
    hist = "mnemos_relay_request_seconds"
    assert _value(families, hist, f"{hist}_count", **route) == 5
    assert _value(families, hist, f"{hist}_sum", **route) == pytest.approx(3 * 0.004 + 2 * 0.2)
    assert _value(families, hist, f"{hist}_bucket", **route, le="0.005") == 3
    assert _value(families, hist, f"{hist}_bucket", **route, le="0.1") == 3
    assert _value(families, hist, f"{hist}_bucket", **route, le="0.25") == 5
    assert _value(families, "mnemos_test_actor_only", "mnemos_test_actor_only_total", queue=queue) == 2
    assert _check_histograms(families) >= 1
    assert _value(families, "mnemos_metrics_sources", "mnemos_metrics_sources") >= 2

    # A process that retires stops counting for gauges; its counters stay.
    assert ray.get(a.flush.remote(retire=True))
    families = _parse(metrics.render())
    assert _value(families, "mnemos_cortex_queue_depth", "mnemos_cortex_queue_depth", queue=queue, pool="cpu-a") == 4
    assert _value(families, "mnemos_cortex_retries", "mnemos_cortex_retries_total", queue=queue) == 4
    for actor in (a, b):
        ray.kill(actor)


def test_background_flusher_pushes_without_an_explicit_flush(ray_cluster) -> None:
    queue = f"bg-{uuid.uuid4().hex[:8]}"
    recorder = _Recorder.remote()
    version = metrics.collect()["version"]
    ray.get(recorder.record.remote("bg", queue, 1, 9, 0.01))
    for _ in range(20):  # each round waits on the aggregator's next push, not on a clock
        snapshot = metrics.collect(since_version=version, timeout=10)
        version = snapshot["version"]
        if snapshot["gauges"].get("mnemos_cortex_queue_depth", {}).get((queue, "cpu-a")) == 9:
            break
    else:
        pytest.fail("the background flusher never pushed the gauge")
    assert snapshot["counters"]["mnemos_cortex_retries_total"][(queue,)] == 2
    ray.kill(recorder)


def test_metrics_route_is_public_and_parses(ray_cluster) -> None:
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.testclient import TestClient

    from mnemos.trace.http import build_router, router

    metrics.TOKENS.inc(7, model="route-test", direction="out")
    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as http:
        response = http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = _parse(response.content)
    assert _value(families, "mnemos_tokens", "mnemos_tokens_total", model="route-test", direction="out") >= 7

    def deny() -> None:
        raise HTTPException(status_code=401, detail="no token")

    protected = FastAPI()
    protected.include_router(build_router(auth=deny, protect_metrics=True))
    with TestClient(protected) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get(f"/v1/traces/{'ab' * 16}").status_code == 401
    open_metrics = FastAPI()
    open_metrics.include_router(build_router(auth=Depends(deny).dependency))
    with TestClient(open_metrics) as http:
        assert http.get("/metrics").status_code == 200
        assert http.get(f"/v1/traces/{'ab' * 16}").status_code == 401


def test_local_render_and_label_errors() -> None:
    gauge = metrics.gauge("mnemos_test_local_level", "A test gauge.", ("slot",))
    gauge.set(2, slot="a")
    gauge.inc(slot="a")
    gauge.dec(0.5, slot="a")
    assert gauge.value(slot="a") == 2.5
    families = _parse(metrics.render(cluster=False))
    assert _value(families, "mnemos_test_local_level", "mnemos_test_local_level", slot="a") == 2.5
    with pytest.raises(ValueError, match=r"takes labels \['route', 'model', 'status'\]"):
        metrics.RELAY_REQUESTS.inc(route="/x", model="m")
    with pytest.raises(ValueError, match="takes labels"):
        metrics.CORTEX_QUEUE_DEPTH.set(1, queue="q", pool="p", extra="x")
    with pytest.raises(ValueError, match="counter"):
        metrics.CORTEX_RETRIES.inc(-1, queue="q")
    with pytest.raises(ValueError, match="already registered"):
        metrics.counter("mnemos_cortex_retries_total", "other help", ("queue",))
    with pytest.raises(ValueError, match="increasing"):
        metrics.histogram("mnemos_test_bad_buckets", "bad", (), buckets=(1.0, 0.5))


def test_aggregator_sums_counters_and_expires_silent_gauges() -> None:
    spec = metrics.CORTEX_QUEUE_DEPTH.spec
    agg = metrics.MetricsAggregator(gauge_ttl=3600)
    epoch = agg.push("p1", {spec.name: spec}, {"mnemos_jobs_total": {("q", "ok"): 2.0}}, {},
                     {spec.name: {("q",): 3.0}})
    agg.push("p2", None, {"mnemos_jobs_total": {("q", "ok"): 1.0}}, {}, {spec.name: {("q",): 4.0}})
    assert epoch == agg.epoch
    snap = agg.snapshot()
    assert snap["counters"]["mnemos_jobs_total"][("q", "ok")] == 3 and snap["gauges"][spec.name][("q",)] == 7
    agg.push("p2", None, {}, {}, None, retire=True)
    assert agg.snapshot()["gauges"][spec.name][("q",)] == 3
    silent = metrics.MetricsAggregator(gauge_ttl=0.0)
    silent.push("p1", None, {}, {}, {spec.name: {("q",): 3.0}})
    assert silent.snapshot()["gauges"] == {} and silent.snapshot()["sources"] == 0
