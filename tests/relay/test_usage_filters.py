"""``GET /v1/usage`` filters of a role that reads only its own usage: the probe's developer outside team
``vision`` asked ``?team=vision`` and got 200 with no rows, while ``?principal=alice`` was 403. A
filter naming what the caller may not read is 403 naming it, in the same words, for both (no
cluster: the router over a fixed ledger)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from mnemos.errors import MnemosError
from mnemos.relay.usage_http import build_router
from mnemos.soul.http import error_response

_ROWS = [
    {"principal": "dana", "team": "nlp", "model": "m", "requests": 2, "prompt_tokens": 3, "completion_tokens": 4,
     "spend": 0.5, "cached": 0},
    {"principal": "alice", "team": "vision", "model": "m", "requests": 7, "prompt_tokens": 1, "completion_tokens": 1,
     "spend": 9.0, "cached": 0},
    {"principal": "nell", "team": "", "model": "m", "requests": 1, "prompt_tokens": 1, "completion_tokens": 1,
     "spend": 0.1, "cached": 0},
]  # fmt: skip
CALLERS = {
    "dana": SimpleNamespace(subject="dana", role="developer", team="nlp"),
    "nell": SimpleNamespace(subject="nell", role="viewer", team=""),
    "ops": SimpleNamespace(subject="ops", role="operator", team=""),
    "nlp-admin": SimpleNamespace(subject="nlp-admin", role="admin", team="nlp"),
    "nlp-ops": SimpleNamespace(subject="nlp-ops", role="operator", team="nlp"),
}


class _Ledger:
    def __init__(self) -> None:
        self.usage = self

    async def remote(self, since: float, until: float | None) -> list[dict[str, Any]]:
        return [{**row, "hour": time.time() - 60} for row in _ROWS]


@pytest.fixture()
def http() -> Iterator[TestClient]:
    async def admit(request: Request, verb: str) -> Any:
        return CALLERS[request.headers["x-caller"]]

    async def handle(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, MnemosError)
        return error_response(exc)

    app = FastAPI()
    app.include_router(build_router(admit, _Ledger))
    app.add_exception_handler(MnemosError, handle)
    with TestClient(app) as client:
        yield client


def _get(http: TestClient, who: str, **params: str) -> Any:
    return http.get("/v1/usage", params=params, headers={"x-caller": who})


def _refused(http: TestClient, who: str, param: str, **params: str) -> str:
    resp = _get(http, who, **params)
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and error["type"] == "permission_error", error
    return str(error["message"])


def test_another_team_is_403_like_another_principal(http: TestClient) -> None:
    team = _refused(http, "dana", "team", team="vision")
    principal = _refused(http, "dana", "principal", principal="alice")
    assert team == "role developer may read only its own usage; leave out team or use team=nlp"
    assert principal == "role developer may read only its own usage; leave out principal or use principal=dana"
    # a caller without a team names none
    assert "leave out team (its credential has no team)" in _refused(http, "nell", "team", team="vision")
    _refused(http, "dana", "team", team="vision", principal="dana")


def test_own_filters_read_own_rows_and_operators_read_all(http: TestClient) -> None:
    own = _get(http, "dana", team="nlp").json()
    assert [(r["principal"], r["team"]) for r in own["data"]] == [("dana", "nlp")]
    assert _get(http, "dana", principal="dana").json()["total"]["requests"] == 2
    assert _get(http, "nell").json()["total"]["requests"] == 1
    assert _get(http, "ops", team="vision").json()["total"]["requests"] == 7
    assert _get(http, "ops", principal="dana").json()["total"]["requests"] == 2


@pytest.mark.parametrize(("caller", "role"), [("nlp-admin", "admin"), ("nlp-ops", "operator")])
def test_an_admin_or_operator_bound_to_a_team_reads_that_teams_usage(http: TestClient, caller: str, role: str) -> None:
    """As the console's Keys page and the credential list show it only its team's (an operator of a
    team read every team's rows, more than an admin of that team)."""
    rows = _get(http, caller).json()["data"]
    assert {row["team"] for row in rows} == {"nlp"} and {row["principal"] for row in rows} == {"dana"}
    assert _get(http, caller, principal="dana").json()["data"] and not _get(
        http, caller, principal="alice").json()["data"]  # fmt: skip
    assert _refused(http, caller, "team", team="vision") == (
        f"an {role} of team nlp reads only its team's usage; leave out team or use team=nlp")  # fmt: skip
    assert {row["team"] for row in _get(http, "ops").json()["data"]} == {"nlp", "vision", ""}
