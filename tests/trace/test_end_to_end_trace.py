"""One trace id links the gateway span, the CORTEX span and the NEURON span of one request."""

from __future__ import annotations

import httpx
import pytest

from mnemos.trace import spans_for


@pytest.fixture(scope="module")
def gateway(ray_cluster, tmp_path_factory):
    """The gateway (auth off) with CORTEX, on a private ENGRAM root."""
    from ray import serve
    from tests_support import free_port

    import mnemos
    from mnemos.config import load_settings
    from mnemos.cortex import ensure as ensure_cortex
    from mnemos.relay import ensure, stop

    stop(shutdown_serve=True)
    root = tmp_path_factory.mktemp("trace-e2e") / "engram"
    for attempt in range(3):  # a free port can be taken (another process's ephemeral port) before Serve binds it
        settings = load_settings(engram={"uri": str(root)}, relay={"port": free_port(), "auth": False})
        client = mnemos.connect(settings=settings)
        ensure_cortex(settings, client.engram)
        try:
            ensure(settings, client.engram)
            break
        except Exception as exc:
            if "Failed to bind" not in str(exc) or attempt == 2:
                raise
            stop(shutdown_serve=True)
    yield f"http://127.0.0.1:{settings.relay.port}"
    stop(shutdown_serve=True)
    serve.shutdown()


def test_job_request_is_one_trace_from_gateway_through_cortex_to_neuron(gateway: str) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    body = {"function": "mnemos.cortex.testing:add", "args": [2, 3]}
    with httpx.Client(timeout=120) as http:
        created = http.post(f"{gateway}/v1/jobs", json=body, headers=headers)
        assert created.status_code in (200, 201, 202), created.text
        job_id = created.json()["id"]
        done = http.get(f"{gateway}/v1/jobs/{job_id}", params={"wait": 60})
        assert done.json()["status"] == "succeeded", done.text
    spans = spans_for(trace_id, min_spans=3, timeout=30)
    names = {s["name"]: s for s in spans}
    assert {"relay.jobs.submit", "cortex.dispatch", "neuron.run"} <= set(names), sorted(names)
    assert {s["trace_id"] for s in spans} == {trace_id}
    # parent chain: gateway -> CORTEX -> NEURON, each in its own process
    assert names["cortex.dispatch"]["parent_span_id"] == names["relay.jobs.submit"]["span_id"]
    assert names["neuron.run"]["parent_span_id"] == names["cortex.dispatch"]["span_id"]
    assert len({names[n]["pid"] for n in ("relay.jobs.submit", "cortex.dispatch", "neuron.run")}) == 3
