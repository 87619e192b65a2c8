"""A trace is read as the request it came from, as the probe met it: ``GET /v1/traces/{id}`` gave a
developer another developer's spans while that request's lineage node was a 404 to them; the trace
of a pipeline run was a 404 to the developer who started it; and a job sent into someone's trace
with its ``traceparent`` made that trace a 404 to its owner."""

from __future__ import annotations

import uuid

from security_support import Gateway


def test_a_developer_reads_only_the_traces_of_its_own_requests(gateway: Gateway) -> None:
    trace = uuid.uuid4().hex
    headers = {"traceparent": f"00-{trace}-{uuid.uuid4().hex[:16]}-01"}  # the client's trace: the job joins it
    submitted = gateway.call("POST", "/v1/jobs", "developer", headers=headers,
                             json={"function": "adder", "kwargs": {"a": 1, "b": 2}})  # fmt: skip
    assert submitted.status_code == 200, submitted.text
    params = {"min_spans": 1, "timeout": 20}
    own = gateway.call("GET", f"/v1/traces/{trace}", "developer", params=params)
    assert own.status_code == 200, own.text
    assert {s["attributes"].get("mnemos.principal") for s in own.json()["spans"]} >= {"developer-user"}

    other = gateway.call("GET", f"/v1/traces/{trace}", "developer-b", params=params)
    missing = gateway.call("GET", f"/v1/traces/{uuid.uuid4().hex}", "developer-b")
    assert other.status_code == missing.status_code == 404, other.text
    for who in ("viewer", "operator", "admin"):
        assert gateway.call("GET", f"/v1/traces/{trace}", who, params=params).status_code == 200, who


def _spans(gateway: Gateway, trace: str, who: str, **params: object) -> list[dict[str, object]]:
    got = gateway.call("GET", f"/v1/traces/{trace}", who, params=params)
    assert got.status_code == 200, (who, got.text)
    return list(got.json()["spans"])


def _principals(spans: list[dict[str, object]]) -> set[object]:
    return {s["attributes"].get("mnemos.principal") for s in spans} - {None}  # type: ignore[attr-defined]


def test_joining_anothers_trace_with_its_traceparent_leaves_its_owner_reading_their_spans(gateway: Gateway) -> None:
    trace = uuid.uuid4().hex
    call = {"function": "adder", "kwargs": {"a": 1, "b": 2}}
    for who in ("developer", "developer-b"):  # developer-b learnt the trace id and sends its job into it
        headers = {"traceparent": f"00-{trace}-{uuid.uuid4().hex[:16]}-01"}
        sent = gateway.call("POST", "/v1/jobs", who, headers=headers, json=call)
        assert sent.status_code == 200, sent.text
    everything = _spans(gateway, trace, "admin", min_spans=6, timeout=30)  # submit, dispatch, run: twice
    assert _principals(everything) == {"developer-user", "developer-b-user"}, everything
    ids = {who: {s["span_id"] for s in _spans(gateway, trace, who)} for who in ("developer", "developer-b")}
    assert ids["developer"] and ids["developer-b"] and not ids["developer"] & ids["developer-b"]
    assert ids["developer"] | ids["developer-b"] == {s["span_id"] for s in everything}
    assert _principals(_spans(gateway, trace, "developer")) == {"developer-user"}
    assert _principals(_spans(gateway, trace, "developer-b")) == {"developer-b-user"}
    assert len(_spans(gateway, trace, "viewer")) == len(everything)


def test_the_developer_who_started_a_run_reads_its_trace(gateway: Gateway) -> None:
    started = gateway.call("POST", "/v1/pipelines/echo-text/runs", "developer", json={"params": {"text": "traced"}})
    assert started.status_code == 202, started.text
    run = started.json()["id"]
    state = gateway.finished_run(run, "developer")
    assert state["status"] == "succeeded", state
    trace = state["trace_id"]
    # synkron.run, synkron.step, and the step job's cortex.dispatch and neuron.run
    spans = _spans(gateway, trace, "developer", min_spans=4, timeout=30)
    names = {s["name"] for s in spans}
    assert {"synkron.run", "synkron.step", "cortex.dispatch", "neuron.run"} <= names, names
    assert _principals(spans) == {"developer-user"}
    other = gateway.call("GET", f"/v1/traces/{trace}", "developer-b")
    missing = gateway.call("GET", f"/v1/traces/{uuid.uuid4().hex}", "developer-b")
    assert other.status_code == missing.status_code == 404, other.text
