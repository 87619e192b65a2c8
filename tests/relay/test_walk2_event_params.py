"""``?last_event_id=`` refused says what an id is and names the parameter the client sent: it quoted
the validator's regular expression (``String should match pattern '^\\s*[0-9]*\\s*$'``), and an id
too long to be one, sent as the query parameter, was named ``Last-Event-ID`` (the header)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient


@pytest.fixture()
def http() -> TestClient:
    """``/v1/events`` (authentication off); only answers given before the bus is read are used."""
    from mnemos.relay._errors import install_error_handlers
    from mnemos.relay.event_stream import build_router

    async def admit(request: Request, verb: str) -> Any:
        return None

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(admit, max_streams=4))
    return TestClient(app)


@pytest.mark.parametrize(("query", "headers", "param", "says"), [
    ({"last_event_id": "-1"}, {}, "last_event_id", "'-1' is not the integer id of an event received before"),
    ({"last_event_id": "1e5"}, {}, "last_event_id", "'1e5' is not the integer id of an event received before"),
    ({"last_event_id": "9" * 31}, {}, "last_event_id", "last_event_id: must be the integer id of an event"),
    ({}, {"Last-Event-ID": "abc"}, "Last-Event-ID", "Last-Event-ID: must be the integer id of an event"),
    ({"last_event_id": "5"}, {"Last-Event-ID": "x"}, "Last-Event-ID", "Last-Event-ID: must be the integer id"),
])  # fmt: skip
def test_a_malformed_last_event_id_is_a_422_naming_the_one_sent(
    http: TestClient, query: dict[str, str], headers: dict[str, str], param: str, says: str
) -> None:
    answer = http.get("/v1/events", params=query, headers=headers)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and says in error["message"], error
    assert "pattern" not in error["message"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_heartbeat_that_is_not_a_number_says_so(http: TestClient, value: str) -> None:
    """``heartbeat=nan`` was refused as "less than or equal to 300", which it is not either."""
    answer = http.get("/v1/events", params={"heartbeat": value})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["param"] == "heartbeat" and "finite number" in error["message"], error
