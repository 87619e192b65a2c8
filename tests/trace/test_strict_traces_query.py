"""Query parameters of ``GET /v1/traces/{id}``: ``?min_span=2`` (a typo of ``min_spans``) answered at
once with the spans in so far, as if the parameter were not there. A parameter the route does not
take, or one given twice, is now a 422 naming it, in the OpenAI shape with or without the gateway's
handlers; the caller is authenticated first. ``/metrics`` takes any (a scrape config's ``params``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from tests_support import refused_422

from mnemos.relay.control import LineageReader
from mnemos.soul.identity import Principal
from mnemos.trace import telemetry
from mnemos.trace.http import PRINCIPAL_ATTRIBUTE, build_router

TRACE = "a" * 32
SPAN = {"trace_id": TRACE, "span_id": "1" * 16, "parent_span_id": None, "name": "relay.request", "kind": "SERVER",
        "start_time": 1.0, "end_time": 2.0, "status": "OK", "attributes": {PRINCIPAL_ATTRIBUTE: "alice"},
        "events": []}  # fmt: skip


@pytest.fixture()
def http(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    asked: list[dict[str, Any]] = []

    async def spans(trace_id: str, **kwargs: Any) -> list[dict[str, Any]]:
        asked.append(kwargs)
        return [SPAN] if trace_id == TRACE else []

    monkeypatch.setattr(telemetry, "wait_spans", spans)

    async def auth(request: Request) -> Principal:
        who = request.headers.get("x-who")
        if not who:
            raise HTTPException(401, "no credential")
        return Principal(who.split("-")[0], who.split("-")[1], "apikey")

    app = FastAPI()  # no MnemosError handler: the route answers its own errors
    app.include_router(build_router(auth=auth, reader=LineageReader))
    with TestClient(app) as client:
        client.asked = asked  # type: ignore[attr-defined]
        yield client


def test_an_unknown_or_repeated_query_parameter_is_a_422_naming_it(http: TestClient) -> None:
    admin = {"x-who": "root-admin"}
    typo = http.get(f"/v1/traces/{TRACE}", params={"min_span": "2"}, headers=admin)
    message = refused_422(typo, "min_span")
    assert "min_span: not a query parameter of this route (it takes min_spans, timeout)" in message
    twice = http.get(f"/v1/traces/{TRACE}?timeout=1&timeout=5", headers=admin)
    assert "given more than once" in refused_422(twice, "timeout")
    assert http.asked == []  # type: ignore[attr-defined]  # no wait for spans was started
    fine = http.get(f"/v1/traces/{TRACE}", params={"min_spans": "1", "timeout": "1"}, headers=admin)
    assert fine.status_code == 200 and fine.json()["spans"] == [SPAN], fine.text


def test_the_caller_is_authenticated_before_the_query_is_read(http: TestClient) -> None:
    assert http.get(f"/v1/traces/{TRACE}", params={"foo": "1"}).status_code == 401


def test_metrics_takes_any_query_parameter(http: TestClient) -> None:
    assert http.get("/metrics", params={"format": "prometheus"}).status_code == 200
