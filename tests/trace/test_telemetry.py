"""TRACE spans: one trace id across Ray processes, the collector, OTLP export only when configured."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import pytest
import ray

from mnemos.config import load_settings
from mnemos.errors import MissingDependencyError, ValidationError
from mnemos.trace import telemetry
from mnemos.trace.telemetry import (
    current_trace_id,
    extract,
    inject,
    setup_tracing,
    span,
    spans_for,
    start_span,
)

OTLP_MODULE = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"


@pytest.fixture()
def driver_tracing() -> Iterator[None]:
    """The driver traces as component ``test`` (restored after tests that swap the provider)."""
    setup_tracing(load_settings(), component="test")
    yield
    setup_tracing(load_settings(), component="test")


@ray.remote(num_cpus=0)
def _leaf(carrier: dict[str, str]) -> tuple[str | None, int]:
    # No setup_tracing here: the lazy default of a plain Ray worker.
    with span("neuron.run", carrier=carrier, step="leaf"):
        return current_trace_id(), os.getpid()


@ray.remote(num_cpus=0)
class _Middle:
    def __init__(self) -> None:
        setup_tracing(component="cortex")

    def dispatch(self, carrier: dict[str, str]) -> tuple[str | None, int, int]:
        with span("cortex.dispatch", carrier=carrier, queue="default"):
            trace_id, leaf_pid = ray.get(_leaf.remote(inject()))
            assert trace_id == current_trace_id()
        return trace_id, os.getpid(), leaf_pid


def test_one_trace_id_across_three_processes(ray_cluster, driver_tracing) -> None:
    middle = _Middle.remote()
    with span("relay.request", route="/v1/chat/completions", model="tiny") as root:
        trace_id = current_trace_id()
        remote_trace_id, middle_pid, leaf_pid = ray.get(middle.dispatch.remote(inject()))
    assert remote_trace_id == trace_id
    assert len({os.getpid(), middle_pid, leaf_pid}) == 3

    spans = {s["name"]: s for s in spans_for(trace_id, min_spans=3, timeout=60)}
    assert set(spans) == {"relay.request", "cortex.dispatch", "neuron.run"}
    gateway, cortex, neuron = spans["relay.request"], spans["cortex.dispatch"], spans["neuron.run"]
    assert {s["trace_id"] for s in spans.values()} == {trace_id}
    assert gateway["parent_span_id"] is None
    assert gateway["span_id"] == f"{root.get_span_context().span_id:016x}"
    assert cortex["parent_span_id"] == gateway["span_id"]
    assert neuron["parent_span_id"] == cortex["span_id"]
    assert (gateway["pid"], cortex["pid"], neuron["pid"]) == (os.getpid(), middle_pid, leaf_pid)
    assert (gateway["service"], cortex["service"], neuron["service"]) == ("mnemos-test", "mnemos-cortex", "mnemos")
    assert cortex["attributes"] == {"queue": "default"} and gateway["attributes"]["model"] == "tiny"
    ray.kill(middle)


def test_span_error_status_and_propagation(ray_cluster, driver_tracing) -> None:
    with pytest.raises(RuntimeError, match="boom"), span("relay.request") as failing:
        raise RuntimeError("boom")
    trace_id = f"{failing.get_span_context().trace_id:032x}"
    (recorded,) = spans_for(trace_id, min_spans=1, timeout=30)
    assert recorded["status"] == "ERROR" and recorded["events"][0]["name"] == "exception"


def test_carrier_semantics(driver_tracing) -> None:
    assert inject() == {} and current_trace_id() is None
    with span("outer"):
        carrier = inject()
        assert carrier["traceparent"].split("-")[1] == current_trace_id()
    # A malformed carrier starts a new root instead of failing the callee.
    with span("callee", carrier={"traceparent": "garbage"}) as callee:
        assert callee.parent is None
    with span("callee", carrier=carrier) as child:
        assert f"{child.parent.span_id:016x}" == carrier["traceparent"].split("-")[2]
    # HTTP headers are a carrier too (a client's own traceparent continues its trace).
    from starlette.datastructures import Headers

    with span("ingress", carrier=Headers({"TraceParent": carrier["traceparent"]})) as ingress:
        assert current_trace_id() == carrier["traceparent"].split("-")[1]
    assert f"{ingress.parent.span_id:016x}" == carrier["traceparent"].split("-")[2]
    # A span ended by hand (a stream) still parents what is injected from it.
    stream = start_span("relay.stream", model="tiny")
    assert current_trace_id() is None
    with span("neuron.generate", carrier=inject(from_span=stream)) as generate:
        assert generate.parent.span_id == stream.get_span_context().span_id
    stream.end()
    with pytest.raises(ValidationError) as bad:
        extract("00-abc")  # type: ignore[arg-type]
    assert bad.value.param == "carrier"
    # None-valued attributes are left out, other objects become strings.
    with span("attrs", model=None, n=3, obj=["a"]) as s:
        pass
    assert dict(s.attributes) == {"n": 3, "obj": "['a']"}


def test_spans_for_validates_the_trace_id(driver_tracing) -> None:
    for bad in ("xyz", "0" * 32, "A" * 32, "a" * 31):
        with pytest.raises(ValidationError) as err:
            spans_for(bad)
        assert err.value.param == "trace_id"
    with pytest.raises(ValidationError) as err:
        spans_for("c" * 50_000)
    assert len(err.value.message) < 200 and err.value.message.endswith("…")  # the id is not echoed whole


def test_traces_route(ray_cluster, driver_tracing) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from mnemos.trace.http import router

    app = FastAPI()
    app.include_router(router)
    with span("relay.request"), span("relay.upstream"):
        trace_id = current_trace_id()
    with TestClient(app) as http:
        body = http.get(f"/v1/traces/{trace_id}", params={"min_spans": 2, "timeout": 20}).json()
        assert [s["name"] for s in body["spans"]] == ["relay.request", "relay.upstream"]
        bad = http.get("/v1/traces/not-a-trace")
        assert bad.status_code == 422 and bad.json()["error"]["param"] == "trace_id"
        missing = http.get(f"/v1/traces/{'ab' * 16}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


class _OtlpReceiver:
    """A real OTLP/gRPC trace receiver on 127.0.0.1."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.requests: list[object] = []
        self.received = threading.Event()
        receiver = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 - the gRPC method name
                receiver.requests.append(request)
                receiver.received.set()
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def spans(self) -> list[tuple[str, str, str]]:
        """(service.name, span name, trace id hex) of everything received."""
        out = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    out.extend((attrs.get("service.name"), s.name, s.trace_id.hex()) for s in scope.spans)
        return out


@pytest.fixture()
def otlp_receiver() -> Iterator[_OtlpReceiver]:
    pytest.importorskip(OTLP_MODULE, reason="the mnemos[otlp] extra is not installed")
    receiver = _OtlpReceiver()
    yield receiver
    receiver.server.stop(0)


def test_otlp_export_when_an_endpoint_is_configured(driver_tracing, otlp_receiver) -> None:
    settings = load_settings(trace={"otlp_endpoint": f"http://127.0.0.1:{otlp_receiver.port}", "service_name": "otl"})
    provider = setup_tracing(settings, component="relay")
    assert telemetry.tracing_info()["otlp_endpoint"] == f"http://127.0.0.1:{otlp_receiver.port}"
    with span("exported"):
        trace_id = current_trace_id()
    started = start_span("exported.by-hand")  # the gateway's kind of span goes to the exporter too
    started.end()
    assert provider.force_flush(30_000)
    assert otlp_receiver.received.wait(30)
    deadline = time.monotonic() + 30
    while ("otl-relay", "exported.by-hand", f"{started.get_span_context().trace_id:032x}") not in otlp_receiver.spans():
        assert time.monotonic() < deadline, otlp_receiver.spans()
        time.sleep(0.1)
    assert ("otl-relay", "exported", trace_id) in otlp_receiver.spans()


def test_no_endpoint_means_no_export(driver_tracing, otlp_receiver, monkeypatch) -> None:
    # An exporter built by mistake would read the standard variable and reach the receiver.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{otlp_receiver.port}")
    provider = setup_tracing(load_settings(trace={"otlp_endpoint": ""}), component="relay")
    assert telemetry.tracing_info()["otlp_endpoint"] is None
    with span("kept-local"):
        trace_id = current_trace_id()
    assert provider.force_flush(30_000)
    assert [s["name"] for s in telemetry.local_spans(trace_id)] == ["kept-local"]
    provider.shutdown()
    assert otlp_receiver.requests == []


def test_missing_exporter_names_the_extra(driver_tracing, monkeypatch) -> None:
    before = telemetry.tracing_info()
    monkeypatch.setitem(sys.modules, OTLP_MODULE, None)  # what an environment without the extra sees
    settings = load_settings(trace={"otlp_endpoint": "http://127.0.0.1:4317"})
    with pytest.raises(MissingDependencyError) as err:
        setup_tracing(settings, component="relay")
    assert "mnemos[otlp]" in err.value.message and err.value.param == "trace.otlp_endpoint"
    assert telemetry.tracing_info() == before  # the working provider was kept


def test_public_names_are_exported() -> None:
    import mnemos.trace

    for name in mnemos.trace.__all__:
        assert getattr(mnemos.trace, name) is not None
    assert mnemos.trace.__all__ == sorted(mnemos.trace.__all__)


def test_in_a_serve_replica_mnemos_logs_through_serves_handlers() -> None:
    """In Serve's high-throughput mode a replica's stderr is re-logged line by line at INFO into a
    buffer that only an ERROR flushes: the gateway's own errors, written to stderr through the root
    logger, sat there unflushed and unreadable. They now go to Serve's handlers, level intact."""
    import logging
    import logging.handlers

    from mnemos.trace.telemetry import log_through_serve

    serve_logger = logging.getLogger("ray.serve")
    ours = logging.getLogger("mnemos")
    kept = (serve_logger.handlers[:], ours.handlers[:], ours.propagate, ours.level)
    records: list[logging.LogRecord] = []
    target = logging.Handler()
    target.emit = records.append  # type: ignore[method-assign]
    buffered = logging.handlers.MemoryHandler(capacity=1000, flushLevel=logging.ERROR, target=target)
    try:
        serve_logger.handlers = [buffered]
        log_through_serve()
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("mnemos.relay").exception("unexpected error while serving a request")
        said = [(r.levelno, r.getMessage()) for r in records]  # flushed by the ERROR itself
        assert said == [(logging.ERROR, "unexpected error while serving a request")]
        assert records[0].exc_info is not None  # the traceback goes with it, for the formatter
    finally:
        serve_logger.handlers, ours.handlers, ours.propagate, _ = kept
        ours.setLevel(kept[3])


def _span_doc(trace_id: str, span_id: str) -> dict[str, object]:
    return {"trace_id": trace_id, "span_id": span_id, "parent_span_id": None, "name": "s", "start_time": 1.0,
            "end_time": 2.0, "attributes": {}, "events": []}  # fmt: skip


def test_readers_waiting_for_spans_never_hold_back_the_collector(ray_cluster) -> None:
    """Readers waiting for a trace (``GET /v1/traces/{id}?min_spans=…&timeout=30``, which any developer
    may send) hold no thread of the collector's: with 64 of them waiting, every process's batches are
    still stored at once, and a waiting reader is answered as soon as its spans are in."""
    collector = telemetry.ensure()
    absent = [os.urandom(16).hex() for _ in range(64)]
    waiting = [collector.spans_for.remote(trace, 1, 15) for trace in absent]
    trace_id = os.urandom(16).hex()
    reader = collector.spans_for.remote(trace_id, 1, 15)
    try:
        assert ray.get(collector.add.remote([_span_doc(trace_id, "1" * 16)]), timeout=5) == 1
        assert [s["span_id"] for s in ray.get(reader, timeout=5)] == ["1" * 16]
    finally:  # their spans arrive: the waiting readers are answered
        ray.get(collector.add.remote([_span_doc(trace, "2" * 16) for trace in absent]), timeout=60)
    assert all(len(spans) == 1 for spans in ray.get(waiting, timeout=60))


def test_readers_past_the_collectors_waiting_limit_are_answered_at_once(ray_cluster) -> None:
    collector = ray.remote(telemetry.SpanCollector).options(num_cpus=0).remote(max_waiting=2)
    try:
        waiting = [collector.spans_for.remote(os.urandom(16).hex(), 1, 30) for _ in range(2)]
        ray.get(collector.stats.remote(), timeout=30)  # the two are waiting (calls start in order)
        assert ray.get(collector.spans_for.remote(os.urandom(16).hex(), 1, 30), timeout=5) == []
        assert ray.get(collector.stats.remote(), timeout=5)["waiting"] == 2
        assert ray.wait(waiting, timeout=0)[0] == []
    finally:
        ray.kill(collector)


def test_the_collector_evicts_the_oldest_traces_past_its_span_budget() -> None:
    """Traces were evicted by count alone: 10,000 traces of a 1,000-step pipeline's size each stayed in
    the collector's memory. Past ``max_spans`` in all the oldest go, and the newest is always kept."""
    import asyncio

    collector = telemetry.SpanCollector(max_traces=100, max_spans_per_trace=50, max_spans=120)
    old, mid, new = (os.urandom(16).hex() for _ in range(3))

    async def fill() -> None:
        for trace in (old, mid, new):
            await collector.add([_span_doc(trace, f"{i:016x}") for i in range(50)])

    asyncio.run(fill())
    stats = asyncio.run(collector.stats())
    assert (stats["traces"], stats["spans"], stats["dropped"]) == (2, 100, 50)
    assert asyncio.run(collector.spans_for(old)) == [] and len(asyncio.run(collector.spans_for(new))) == 50
    small = telemetry.SpanCollector(max_spans=10)
    asyncio.run(small.add([_span_doc(new, f"{i:016x}") for i in range(50)]))  # alone over the budget: kept
    assert len(asyncio.run(small.spans_for(new))) == 50


def test_the_collector_keeps_each_span_as_its_json_until_it_is_read() -> None:
    """A span in the collector was a dict (a dozen objects the garbage collector walks, up to 200,000
    spans) parsed from every batch on arrival. It is kept as its JSON, which the collector does not
    parse and the garbage collector does not track, and is read back as the same document."""
    import asyncio
    import gc

    from pydantic_core import to_json

    collector = telemetry.SpanCollector()
    trace = os.urandom(16).hex()
    docs = [{**_span_doc(trace, f"{i:016x}"), "start_time": 10.0 - i, "end_time": 20.0 + i} for i in range(4)]
    assert asyncio.run(collector.add(docs[:2])) == 2  # dicts, as callers other than the shipper send
    assert asyncio.run(collector.add([(trace, to_json(d)) for d in docs[2:]])) == 2  # the shipper's pairs
    kept = collector._traces[trace]
    assert all(type(doc) is bytes and not gc.is_tracked(doc) for doc in kept)
    assert asyncio.run(collector.spans_for(trace)) == sorted(docs, key=lambda d: d["start_time"])
    assert asyncio.run(collector.recent(3)) == docs[1:]  # the latest three to end, oldest first


def test_the_traces_route_waits_without_a_thread(ray_cluster, driver_tracing) -> None:
    """``GET /v1/traces/{id}`` waiting for spans holds none of the replica's threads: with more readers
    waiting than the event loop has threads, ``/metrics`` (rendered in a thread) still answers at once."""
    import asyncio

    import httpx
    from fastapi import FastAPI

    from mnemos.trace.http import router

    app = FastAPI()
    app.include_router(router)

    async def main() -> float:
        asyncio.get_running_loop().set_default_executor(futures.ThreadPoolExecutor(max_workers=2))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            wait = {"min_spans": 1, "timeout": 8}
            waits = [asyncio.create_task(http.get(f"/v1/traces/{os.urandom(16).hex()}", params=wait)) for _ in range(6)]
            await asyncio.sleep(1.0)
            started = asyncio.get_running_loop().time()
            assert (await asyncio.wait_for(http.get("/metrics"), 30)).status_code == 200
            took = asyncio.get_running_loop().time() - started
            assert {r.status_code for r in await asyncio.gather(*waits)} == {404}
            return took

    assert asyncio.run(main()) < 4.0


def test_a_clients_not_sampled_flag_does_not_hide_its_request(driver_tracing) -> None:
    """A client's ``traceparent`` joins its trace but does not choose whether the platform traces the
    request: ``…-00`` (not sampled) is recorded like any request, and so is the work under it."""
    from starlette.datastructures import Headers

    from mnemos.relay._telemetry import RequestTelemetry

    trace_id, parent = os.urandom(16).hex(), os.urandom(8).hex()
    request = RequestTelemetry("/v1/chat/completions", "m", Headers({"traceparent": f"00-{trace_id}-{parent}-00"}))
    assert request.trace_id == trace_id
    with span("neuron.generate", carrier=request.carrier()):
        pass
    request.finish(200)
    spans = {s["name"]: s for s in telemetry.local_spans(trace_id)}
    assert set(spans) == {"relay.request", "neuron.generate"}
    assert spans["relay.request"]["parent_span_id"] == parent
    assert spans["neuron.generate"]["parent_span_id"] == spans["relay.request"]["span_id"]


def _shipped(span_id: int) -> dict:
    (found,) = [s for s in telemetry.local_spans() if s["span_id"] == f"{span_id:016x}"]
    return found


def _a_started_span(parent: dict[str, str]) -> dict:
    started = start_span("relay.request", carrier=parent, kind=telemetry.SpanKind.SERVER, route="/v1/x", n=3,
                         obj=["a"], gone=None)  # fmt: skip
    started.set_attribute("mnemos.cancelled", True)
    started.set_attributes({"http.status_code": 500, "model": "m", "tags": ("a", "b"), "none": None, "set": {1}})
    try:
        raise KeyError("boom")
    except KeyError as exc:
        started.record_exception(exc)
    started.set_status(telemetry.StatusCode.ERROR, "upstream failed")
    child = inject(from_span=started)["traceparent"].split("-")
    started.end()
    started.end()  # ending twice ships it once
    started.set_attribute("late", 1)  # after the end: not recorded
    shipped = _shipped(started.get_span_context().span_id)
    assert child[1:3] == [shipped["trace_id"], shipped["span_id"]]
    return shipped


def test_a_started_span_ships_what_the_sdk_span_shipped(driver_tracing, monkeypatch) -> None:
    """``start_span`` records the gateway's span itself (no SDK span); what reaches the collector is
    what the SDK's span gave, field for field."""
    parent = {"traceparent": f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"}
    assert isinstance(start_span("probe"), telemetry._RecordedSpan)
    recorded = _a_started_span(parent)
    monkeypatch.setattr(telemetry._STATE, "recorded", False)
    assert not isinstance(start_span("probe"), telemetry._RecordedSpan)
    sdk = _a_started_span(parent)
    assert set(recorded) == set(sdk)
    volatile = {"span_id", "start_time", "end_time", "duration_ms", "events"}
    def steady(shipped: dict) -> dict:
        return {k: v for k, v in shipped.items() if k not in volatile}

    assert steady(recorded) == steady(sdk)
    assert recorded["trace_id"] == parent["traceparent"].split("-")[1]
    assert recorded["parent_span_id"] == parent["traceparent"].split("-")[2]
    assert recorded["status"] == "ERROR" and recorded["status_message"] == "upstream failed"
    assert recorded["attributes"] == {"route": "/v1/x", "n": 3, "obj": "['a']", "mnemos.cancelled": True,
                                      "http.status_code": 500, "model": "m", "tags": ["a", "b"], "none": None,
                                      "set": "{1}"}  # fmt: skip
    for shipped in (recorded, sdk):
        (event,) = shipped["events"]
        assert event["name"] == "exception" and event["attributes"]["exception.type"] == "KeyError"
        assert "raise KeyError" in event["attributes"]["exception.stacktrace"]
    assert 0 <= recorded["duration_ms"] < 60_000 and recorded["end_time"] >= recorded["start_time"]


def test_a_started_span_without_a_parent_is_a_root_and_ok_is_final(driver_tracing) -> None:
    root = start_span("root")
    root.set_status(telemetry.StatusCode.OK)
    root.set_status(telemetry.StatusCode.ERROR, "too late")  # OK is final, as the SDK has it
    root.end()
    shipped = _shipped(root.get_span_context().span_id)
    assert shipped["parent_span_id"] is None and shipped["status"] == "OK" and shipped["status_message"] is None
    assert shipped["service"].endswith("-test") and shipped["component"] == "test" and shipped["pid"] == os.getpid()


def test_a_sampler_of_ones_own_keeps_the_sdk(driver_tracing, monkeypatch) -> None:
    """``OTEL_TRACES_SAMPLER`` chooses what is recorded: with one set, the SDK's spans decide it."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    setup_tracing(load_settings(), component="test")
    started = start_span("sampled-out")
    assert not started.is_recording()
    started.end()
    assert not [s for s in telemetry.local_spans() if s["name"] == "sampled-out"]


def test_a_child_of_a_local_span_not_sampled_is_not_recorded(driver_tracing) -> None:
    from opentelemetry import context, trace

    unsampled = trace.NonRecordingSpan(trace.SpanContext(int(os.urandom(16).hex(), 16), 7, is_remote=False))
    token = context.attach(trace.set_span_in_context(unsampled))
    try:
        child = start_span("under-unsampled")
    finally:
        context.detach(token)
    assert not child.is_recording()
    assert child.get_span_context().trace_id == unsampled.get_span_context().trace_id
    child.end()
    assert not [s for s in telemetry.local_spans() if s["name"] == "under-unsampled"]
