"""The control-plane API through the real gateway: query parameters and JSON bodies are checked,
never ignored or coerced, and a 404 names the parameter of the path it is about."""

from __future__ import annotations

import re

import httpx
import pytest
from relay_support import Relay, assert_openai_error

# Values for the path parameters of the routes below (any value the route's pattern accepts).
SAMPLES = {"group": "genome.mnemos.dev", "version": "v1", "plural": "models", "name": "echo", "kind": "Model",
           "node_id": "nothing", "space": "nothing", "digest": "sha256:" + "0" * 64, "key": "k", "run_id": "nothing",
           "output": "items"}  # fmt: skip
CHECKED = ("/apis/", "/v1/status", "/v1/whoami", "/v1/lineage", "/v1/spaces", "/v1/files", "/v1/secrets", "/v1/runs",
           "/v1/pipelines/")  # fmt: skip
"""The routes of the control plane (``relay.control``) and of SYNKRON (``synkron.http``)."""


def _routes(relay: Relay) -> list[tuple[str, str, list[str]]]:
    """Each (method, path with sample values, query parameters it declares) of ``CHECKED``."""
    spec = httpx.get(f"{relay.url}/openapi.json", timeout=30).json()
    found = []
    for path, operations in spec["paths"].items():
        if not path.startswith(CHECKED):
            continue
        for method, operation in operations.items():
            declared = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            found.append((method.upper(), re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], path), declared))
    return found


def test_an_unknown_query_parameter_is_a_422_naming_it_on_every_route(relay: Relay) -> None:
    """``GET /v1/spaces?foo=1``, ``GET /v1/runs?pipelin=x`` (a typo of the filter) and the other
    control-plane routes answered as if the parameter were not there: the typo read as "no filter".
    Each is now a 422 naming it and the parameters the route takes, before anything is done."""
    routes = _routes(relay)
    assert ("GET", "/v1/spaces", []) in routes and ("GET", "/v1/runs", ["pipeline", "limit"]) in routes
    assert len(routes) >= 25, routes
    for method, path, declared in routes:
        answer = httpx.request(method, f"{relay.url}{path}", params={"foo": "1"}, timeout=30)
        assert answer.status_code == 422, (method, path, answer.text)
        error = assert_openai_error(answer, 422, code="validation_error", param="foo")
        takes = ", ".join(declared) if declared else "none"
        assert f"not a query parameter of this route (it takes {takes})" in error["message"], (method, path, error)
    typo = httpx.get(f"{relay.url}/v1/runs", params={"pipelin": "x"}, timeout=30)
    assert_openai_error(typo, 422, param="pipelin")


def test_a_query_parameter_given_twice_is_a_422_and_declared_ones_still_work(relay: Relay) -> None:
    twice = httpx.get(f"{relay.url}/v1/runs?limit=1&limit=2", timeout=30)
    error = assert_openai_error(twice, 422, param="limit")
    assert "given more than once" in error["message"]
    assert httpx.get(f"{relay.url}/v1/runs", params={"limit": "1"}, timeout=30).status_code == 200
    listed = httpx.get(f"{relay.url}/apis/genome.mnemos.dev/v1/models/echo", params={"generation": "1"}, timeout=30)
    assert listed.status_code == 200, listed.text
    assert httpx.get(f"{relay.url}/v1/lineage/nothing", params={"limit": "5"}, timeout=30).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [({"query": "plants", "k": "3"}, "k"), ({"query": "plants", "k": True}, "k"), ({"query": 5}, "query")],
)
def test_a_search_body_is_strict_json(relay: Relay, body: dict[str, object], field: str) -> None:
    """``{"k": "3"}`` was read as 3 (pydantic's lax mode): the body said a string where the
    published schema says an integer. It is a 422 naming ``k`` (before the space is looked up)."""
    answer = httpx.post(f"{relay.url}/v1/spaces/nothing/search", json=body, timeout=30)
    assert_openai_error(answer, 422, code="validation_error", param=field)
    whole = httpx.post(f"{relay.url}/v1/spaces/nothing/search", json={"query": "plants", "k": 3.0}, timeout=30)
    assert_openai_error(whole, 404, param="space")  # 3.0 is an integer, as JSON Schema has it
    listed = httpx.post(f"{relay.url}/v1/spaces/nothing/search", json=[body], timeout=30)
    assert_openai_error(listed, 400, param="body")


def test_a_missing_secret_or_key_is_a_404_naming_the_path_parameter(relay: Relay) -> None:
    """The 404 of ``/v1/secrets/{name}`` named ``secretRef`` (a field of resources, not of this
    route); it names the path's ``name``, or ``key`` for a missing key of a secret that exists."""
    url = f"{relay.url}/v1/secrets"
    for method, path in (("GET", "/api-no-such"), ("DELETE", "/api-no-such"), ("DELETE", "/api-no-such/k")):
        answer = httpx.request(method, url + path, timeout=30)
        error = assert_openai_error(answer, 404, code="not_found", param="name")
        assert "api-no-such" in error["message"], error
    assert httpx.put(f"{url}/api-keys/present", json={"value": "s3cr3t"}, timeout=30).status_code == 200
    try:
        answer = httpx.delete(f"{url}/api-keys/absent", timeout=30)
        error = assert_openai_error(answer, 404, code="not_found", param="key")
        assert "absent" in error["message"] and "s3cr3t" not in answer.text
    finally:
        httpx.delete(f"{url}/api-keys", timeout=30)
