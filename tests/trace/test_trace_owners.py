"""Whose spans ``GET /v1/traces/{id}`` shows, by the rule of lineage's ``request:`` nodes: a developer
its own spans only (a trace with none of them: 404, as one that does not exist), a viewer every
span's metadata without its data, operators and admins everything. A span is owned by the principal
recorded on it or on its nearest ancestor that records one, so a request sent into another's trace
with a ``traceparent`` naming it takes nothing from that trace's owner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from mnemos.relay.control import LineageReader
from mnemos.soul.identity import Principal
from mnemos.trace import telemetry
from mnemos.trace.http import PRINCIPAL_ATTRIBUTE, build_router, span_owners

ALICE, UNOWNED, JOINED, RUN = "a" * 32, "b" * 32, "c" * 32, "e" * 32


def _span(trace: str, span_id: str, parent: str | None, **attributes: Any) -> dict[str, Any]:
    return {"trace_id": trace, "span_id": span_id, "parent_span_id": parent, "name": f"s{span_id}", "kind": "SERVER",
            "start_time": float(int(span_id, 16)), "end_time": 0.0, "status": "ERROR",
            "status_message": "RuntimeError: alice's secret", "attributes": attributes,
            "events": [{"name": "exception", "attributes": {"exception.type": "RuntimeError",
                                                            "exception.message": "alice's secret"}}]}  # fmt: skip


TRACES = {
    ALICE: [_span(ALICE, "1" * 16, None, route="/v1/chat/completions", model="m", **{PRINCIPAL_ATTRIBUTE: "alice"}),
            _span(ALICE, "2" * 16, "1" * 16, model="m", prompt_chars="alice's data")],
    UNOWNED: [_span(UNOWNED, "3" * 16, None, job_id="j1")],
    # bob's request sent into alice's trace with a traceparent of its own making (its parent: none of
    # the trace's spans, or alice's own request span), and the spans under it
    JOINED: [_span(JOINED, "4" * 16, None, **{PRINCIPAL_ATTRIBUTE: "alice"}),
             _span(JOINED, "5" * 16, "9" * 16, **{PRINCIPAL_ATTRIBUTE: "bob"}),
             _span(JOINED, "6" * 16, "4" * 16, **{PRINCIPAL_ATTRIBUTE: "bob"}),
             _span(JOINED, "7" * 16, "6" * 16, job_id="bobs-job"),
             _span(JOINED, "8" * 16, "4" * 16, job_id="alices-job")],
    # a SYNKRON run: its run and step spans record its starter; the step's job spans are their children
    RUN: [_span(RUN, "a" * 16, "f" * 16, run_id="r1", pipeline="p", **{PRINCIPAL_ATTRIBUTE: "alice"}),
          _span(RUN, "b" * 16, "a" * 16, run_id="r1", step="s", **{PRINCIPAL_ATTRIBUTE: "alice"}),
          _span(RUN, "c" * 16, "b" * 16, job_id="j2", queue="default"),
          _span(RUN, "d" * 16, "c" * 16, job_id="j2", pool="cpu-a")],
}  # fmt: skip


@pytest.fixture()
def http(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    async def spans(trace_id: str, **_: Any) -> list[dict[str, Any]]:
        return list(TRACES.get(trace_id, []))

    monkeypatch.setattr(telemetry, "wait_spans", spans)

    async def auth(request: Request) -> Principal | None:
        who = request.headers.get("x-who")
        return Principal(who.split("-")[0], who.split("-")[1], "apikey") if who else None

    app = FastAPI()
    app.include_router(build_router(auth=auth, reader=LineageReader))  # as the gateway builds it
    with TestClient(app) as client:
        yield client


def _get(http: TestClient, trace: str, who: str | None) -> Any:
    return http.get(f"/v1/traces/{trace}", headers={"x-who": who} if who else {})


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [s["span_id"] for s in response.json()["spans"]]


def test_a_developer_reads_its_own_traces_only(http: TestClient) -> None:
    mine = _get(http, ALICE, "alice-developer")
    assert mine.status_code == 200 and mine.json()["spans"] == TRACES[ALICE], mine.text
    missing = _get(http, "d" * 32, "bob-developer")
    assert missing.status_code == 404
    for trace, who in ((ALICE, "bob-developer"), (UNOWNED, "alice-developer"), (RUN, "bob-developer")):
        refused = _get(http, trace, who)
        assert refused.status_code == 404, (trace, who, refused.text)
        assert refused.json()["error"]["message"] == missing.json()["error"]["message"].replace("d" * 32, trace)


def test_the_owner_of_a_run_reads_its_trace(http: TestClient) -> None:
    """The run and step spans record the run's starter, and own the spans of its step jobs."""
    assert _get(http, RUN, "alice-developer").json()["spans"] == TRACES[RUN]


def test_joining_anothers_trace_takes_nothing_from_its_owner(http: TestClient) -> None:
    """Bob's requests sent into alice's trace (``traceparent`` naming it) are bob's: alice still reads
    her spans, bob reads his, neither the other's."""
    assert _ids(_get(http, JOINED, "alice-developer")) == ["4" * 16, "8" * 16]
    assert _ids(_get(http, JOINED, "bob-developer")) == ["5" * 16, "6" * 16, "7" * 16]
    assert _get(http, JOINED, "carol-developer").status_code == 404
    for who in ("root-admin", "ops-operator"):
        assert _get(http, JOINED, who).json()["spans"] == TRACES[JOINED]
    assert _ids(_get(http, JOINED, "vera-viewer")) == [s["span_id"] for s in TRACES[JOINED]]


def test_span_owners_take_the_nearest_record_up_the_chain() -> None:
    assert span_owners(TRACES[JOINED]) == {"4" * 16: "alice", "5" * 16: "bob", "6" * 16: "bob", "7" * 16: "bob",
                                           "8" * 16: "alice"}  # fmt: skip
    assert span_owners(TRACES[UNOWNED]) == {"3" * 16: None}
    # a parent chain that loops (no recorded owner on it) owns nothing, and ends
    loop = [_span(UNOWNED, "1" * 16, "2" * 16), _span(UNOWNED, "2" * 16, "1" * 16)]
    assert span_owners(loop) == {"1" * 16: None, "2" * 16: None}


def test_operators_and_admins_read_everything_viewers_metadata(http: TestClient) -> None:
    for who in ("root-admin", "ops-operator", None):
        for trace in TRACES:
            assert _get(http, trace, who).json()["spans"] == TRACES[trace], (who, trace)
    shown = _get(http, ALICE, "vera-viewer").json()["spans"]
    assert [s["span_id"] for s in shown] == [s["span_id"] for s in TRACES[ALICE]]
    assert shown[0]["attributes"] == {"route": "/v1/chat/completions", "model": "m", PRINCIPAL_ATTRIBUTE: "alice"}
    assert shown[1]["attributes"] == {"model": "m"} and "attributes.prompt_chars" in shown[1]["withheld"]
    assert "alice's secret" not in str(shown)
    assert shown[0]["status_message"].startswith("RuntimeError (details withheld")
    assert shown[0]["events"] == [{"name": "exception", "attributes": {"exception.type": "RuntimeError"}}]
    assert _get(http, UNOWNED, "vera-viewer").status_code == 200  # nobody's: its metadata
