"""A JSON body that repeats a key in one object is refused (400 naming the key's path), never read
as its last value: a proxy, WAF or log that reads the first one would disagree with what we did.

Here on SOUL's own route (``POST /v1/tokens``, parsed by ``parse_json``) served on 127.0.0.1, and
the two parsers directly; ``tests/security/test_json_keys.py`` covers the gateway's edge.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mnemos._model import check_json_body, parse_json
from mnemos.errors import BadRequestError


@pytest.fixture()
def tokens(tmp_path: Path, make_settings: Any, make_app: Any, serve: Any) -> Iterator[dict[str, Any]]:
    from mnemos.engram import Engram
    from mnemos.soul import EdgeGuard, IdentityStore, LocalRateLimiter

    settings = make_settings(tmp_path)
    engram = Engram.from_settings(settings)
    guard = EdgeGuard(settings, engram, limiter=LocalRateLimiter())
    store = IdentityStore.from_settings(settings, engram)
    admin = store.create_api_key("root", "admin").secret
    with serve(make_app(guard)) as served:
        headers = {"Authorization": f"Bearer {admin}", "content-type": "application/json"}
        yield {"url": served.url + "/v1/tokens", "headers": headers, "store": store}


def test_a_repeated_role_mints_nothing(tokens: dict[str, Any]) -> None:
    body = b'{"name": "mallory", "role": "viewer", "apiKey": true, "role": "admin"}'
    resp = httpx.post(tokens["url"], content=body, headers=tokens["headers"], timeout=30)
    assert resp.status_code == 400, resp.text  # it was 201, an admin key
    error = resp.json()["error"]
    assert error["param"] == "body.role" and error["type"] == "invalid_request_error", error
    assert error["message"].startswith("the request body repeats the key 'role' in one object (body.role)")
    assert "mallory" not in {doc["name"] for doc in tokens["store"].list(include_inactive=True)}

    resp = httpx.post(tokens["url"], json={"name": "ok", "role": "viewer"}, headers=tokens["headers"], timeout=30)
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b'{"name":"x","role":"viewer","role":"admin"}', "body.role"),
        (b'{"r\\u006fle":"viewer","role":"admin"}', "body.role"),  # the same key, escaped
        (b'{"messages":[{"role":"user"},{"role":"user","content":"a","content":"b"}]}', "body.messages[1].content"),
        ('{"cl\u00e9":1,"cl\u00e9":2}'.encode(), "body.cl\u00e9"),
        (json.dumps({"a": 1}).encode("utf-16")[:-2] + ',"a":2}'.encode("utf-16-le"), "body.a"),  # UTF-16 text
        (b'[{"deep":[[{"k":1,"k":1}]]}]', "body[0].deep[0][0].k"),  # the same value twice is still refused
    ],
)
def test_both_parsers_name_the_repeated_key(raw: bytes, path: str) -> None:
    for check in (parse_json, check_json_body):
        with pytest.raises(BadRequestError) as caught:
            check(raw)
        assert caught.value.param == path and f"in one object ({path}): send each key once" in caught.value.message


def test_keys_shared_by_different_objects_pass() -> None:
    raw = b'{"role":"a","messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}],"n":{"role":1}}'
    assert parse_json(raw)["messages"][1]["role"] == "assistant"
    check_json_body(raw)
