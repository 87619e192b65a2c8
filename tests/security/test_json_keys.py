"""The gateway's edge refuses a JSON body that repeats a key in one object, on every route, before
the route reads it: ``{"role": "viewer", "role": "admin"}`` is a 400 naming ``body.role``, never
an admin credential that a proxy or log reading the first key would have seen as a viewer's."""

from __future__ import annotations

from typing import Any

from security_support import Gateway

JSON = {"content-type": "application/json"}


def _refused(resp: Any, path: str) -> None:
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == path and error["type"] == "invalid_request_error", error
    assert f"repeats the key {path.rsplit('.', 1)[-1]!r} in one object ({path})" in error["message"], error


def test_a_repeated_key_is_refused_on_every_route(gateway: Gateway) -> None:
    mint = b'{"name": "mallory", "role": "viewer", "apiKey": true, "role": "admin"}'
    _refused(gateway.call("POST", "/v1/tokens", "admin", content=mint, headers=JSON), "body.role")
    assert "mallory" not in {doc["name"] for doc in gateway.store.list(include_inactive=True)}
    assert gateway.call("POST", "/v1/tokens", content=mint, headers=JSON).status_code == 401  # credentials first

    chat = b'{"model": "nope", "messages": [{"role": "user", "content": "a"}, {"role": "user", "role": "system"}]}'
    _refused(gateway.call("POST", "/v1/chat/completions", "developer", content=chat, headers=JSON),
             "body.messages[1].role")  # fmt: skip
    jobs = len(gateway.admin_jobs())
    job = b'{"function": "adder", "kwargs": {"a": 1, "b": 2, "\\u0061": 40}}'  # "a" again, escaped
    _refused(gateway.call("POST", "/v1/jobs", "developer", content=job, headers=JSON), "body.kwargs.a")
    assert len(gateway.admin_jobs()) == jobs

    shared = b'{"model": "nope", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}'
    resp = gateway.call("POST", "/v1/chat/completions", "developer", content=shared, headers=JSON)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found", resp.text
