"""A trace is read as the request it came from, as the probe met it: ``GET /v1/traces/{id}`` gave a
developer another developer's spans while that request's lineage node was a 404 to them."""

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
