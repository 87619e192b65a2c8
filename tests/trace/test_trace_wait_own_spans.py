"""``GET /v1/traces/{id}?min_spans=N&timeout=T`` waits for N of the caller's spans: it answered as soon
as the trace held N spans of anyone's, so a developer with one span in another's trace learned how many
spans the others had there from how fast the answer came."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from mnemos.relay.control import LineageReader
from mnemos.soul.identity import Principal
from mnemos.trace import telemetry
from mnemos.trace.http import PRINCIPAL_ATTRIBUTE, build_router

TRACE = "c" * 32


def _span(span_id: str, parent: str | None, **attributes: Any) -> dict[str, Any]:
    return {"trace_id": TRACE, "span_id": span_id, "parent_span_id": parent, "name": f"s{span_id}",
            "kind": "SERVER", "start_time": float(int(span_id, 16)), "end_time": 0.0,
            "attributes": attributes}  # fmt: skip


# alice's request and two spans under it; bob's request sent into her trace, and one span under it
SPANS = [_span("1" * 16, None, **{PRINCIPAL_ATTRIBUTE: "alice"}), _span("2" * 16, "1" * 16),
         _span("3" * 16, "1" * 16), _span("4" * 16, "9" * 16, **{PRINCIPAL_ATTRIBUTE: "bob"}),
         _span("5" * 16, "4" * 16)]  # fmt: skip


@pytest.fixture()
def asked(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, list[int]]]:
    """The traces route over a collector holding ``SPANS`` (no span arrives); the ``min_spans`` of
    each wait the route asks the collector for (a wait for more than the trace holds lasts ``timeout``)."""
    waits: list[int] = []

    async def wait_spans(trace_id: str, *, min_spans: int = 0, timeout: float = 0.0) -> list[dict[str, Any]]:
        waits.append(min_spans)
        if min_spans > len(SPANS):
            await asyncio.sleep(timeout)
        return list(SPANS) if trace_id == TRACE else []

    monkeypatch.setattr(telemetry, "wait_spans", wait_spans)

    async def auth(request: Request) -> Principal:
        who = request.headers["x-who"]
        return Principal(who.split("-")[0], who.split("-")[1], "apikey")

    app = FastAPI()
    app.include_router(build_router(auth=auth, reader=LineageReader))  # as the gateway builds it
    with TestClient(app) as client:
        yield client, waits


def test_a_developer_waits_for_its_own_spans_not_for_others(asked: tuple[TestClient, list[int]]) -> None:
    http, waits = asked
    params = {"min_spans": 3, "timeout": 0.2}  # bob has 2 spans here; the trace holds 5
    answer = http.get(f"/v1/traces/{TRACE}", params=params, headers={"x-who": "bob-developer"})
    assert answer.status_code == 200 and [s["span_id"] for s in answer.json()["spans"]] == ["4" * 16, "5" * 16]
    assert max(waits) > len(SPANS), waits  # it waited for spans still to come, as for a trace of 2 spans
    waits.clear()
    answer = http.get(f"/v1/traces/{TRACE}", params=params, headers={"x-who": "alice-developer"})
    assert answer.status_code == 200 and len(answer.json()["spans"]) == 3
    assert max(waits) <= len(SPANS), waits  # alice's three are in: answered at once
    waits.clear()
    answer = http.get(f"/v1/traces/{TRACE}", params={"min_spans": 5, "timeout": 0.2}, headers={"x-who": "ops-admin"})
    assert answer.status_code == 200 and len(answer.json()["spans"]) == 5 and max(waits) <= len(SPANS), waits


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_timeout_that_is_not_a_number_says_so(asked: tuple[TestClient, list[int]], value: str) -> None:
    """``timeout=nan`` was refused as "less than or equal to 30", which it is not either."""
    http, waits = asked
    answer = http.get(f"/v1/traces/{TRACE}", params={"timeout": value}, headers={"x-who": "alice-developer"})
    assert answer.status_code == 422 and "finite number" in answer.text and waits == [], answer.text
