"""``POST /v1/tokens``'s body is strict JSON: each field of another JSON type than its schema says is a
422 naming it, before anything is minted. ``ttl`` (and ``limits.budget.window``) is a ``Duration``,
as in every MNEMOS body: seconds (a number) or a duration string, and the published pattern takes a
string without a unit (``"3600"``: seconds) as it takes ``"1h"``; a boolean or a string that is no
duration is refused."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize(
    ("field", "param"),
    [({"name": 5}, "body.name"), ({"role": ["viewer"]}, "body.role"), ({"ttl": True}, "body.ttl"),
     ({"ttl": "an hour"}, "body.ttl"), ({"ttl": [3600]}, "body.ttl"), ({"scopes": "infer"}, "body.scopes"),
     ({"scopes": ["infer", 1]}, "body.scopes.1"), ({"apiKey": "true"}, "body.apiKey"), ({"apiKey": 1}, "body.apiKey"),
     ({"team": 7}, "body.team"), ({"limits": {"rpm": "60"}}, "body.limits.rpm"), ({"limits": 60}, "body.limits"),
     ({"limits": {"budget": {"amount": "5"}}}, "body.limits.budget.amount"),
     ({"limits": {"budget": {"window": False}}}, "body.limits.budget.window"), ({"models": "m"}, "body.models"),
     ({"models": ["m", 2]}, "body.models.1"), ({"expires": 5}, "body.expires")],
)  # fmt: skip
def test_a_field_of_another_json_type_is_a_422_naming_it(token_gateway: Any, field: dict[str, Any], param: str) -> None:
    client, headers, store = token_gateway
    before = len(store.list(include_inactive=True))
    resp = client.post("/v1/tokens", json={"name": "bob", "role": "viewer", **field}, headers=headers)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["param"] == param, resp.text
    assert len(store.list(include_inactive=True)) == before


@pytest.mark.parametrize("ttl", [3600, 3600.0, "3600", "1h", "60m"])
def test_a_ttl_is_seconds_or_a_duration_string(token_gateway: Any, ttl: Any) -> None:
    client, headers, _ = token_gateway
    resp = client.post("/v1/tokens", json={"name": "bob", "role": "viewer", "ttl": ttl}, headers=headers)
    assert resp.status_code == 201, resp.text
