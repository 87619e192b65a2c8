"""Whose spans ``GET /v1/traces/{id}`` shows, by the rule of lineage's ``request:`` nodes: a developer
its own traces only (another's: 404, as one that does not exist), a viewer every trace's metadata
without its data, operators and admins everything."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from mnemos.relay.control import LineageReader
from mnemos.soul.identity import Principal
from mnemos.trace import telemetry
from mnemos.trace.http import PRINCIPAL_ATTRIBUTE, build_router

ALICE, UNOWNED, JOINED = "a" * 32, "b" * 32, "c" * 32


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
    # bob's request sent into alice's trace with a traceparent of its own making
    JOINED: [_span(JOINED, "4" * 16, None, **{PRINCIPAL_ATTRIBUTE: "alice"}),
             _span(JOINED, "5" * 16, "9" * 16, **{PRINCIPAL_ATTRIBUTE: "bob"})],
}  # fmt: skip


@pytest.fixture()
def http(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(telemetry, "spans_for", lambda trace_id, **_: list(TRACES.get(trace_id, [])))

    async def auth(request: Request) -> Principal | None:
        who = request.headers.get("x-who")
        return Principal(who.split("-")[0], who.split("-")[1], "apikey") if who else None

    app = FastAPI()
    app.include_router(build_router(auth=auth, reader=LineageReader))  # as the gateway builds it
    with TestClient(app) as client:
        yield client


def _get(http: TestClient, trace: str, who: str | None) -> Any:
    return http.get(f"/v1/traces/{trace}", headers={"x-who": who} if who else {})


def test_a_developer_reads_its_own_traces_only(http: TestClient) -> None:
    mine = _get(http, ALICE, "alice-developer")
    assert mine.status_code == 200 and mine.json()["spans"] == TRACES[ALICE], mine.text
    missing = _get(http, "d" * 32, "bob-developer")
    assert missing.status_code == 404
    for trace, who in ((ALICE, "bob-developer"), (UNOWNED, "alice-developer"), (JOINED, "alice-developer"),
                       (JOINED, "bob-developer")):  # fmt: skip
        refused = _get(http, trace, who)
        assert refused.status_code == 404, (trace, who, refused.text)
        assert refused.json()["error"]["message"] == missing.json()["error"]["message"].replace("d" * 32, trace)


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
