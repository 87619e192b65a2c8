"""``OpenAIFastPath``: well-formed requests skip FastAPI's routing; everything else is FastAPI's.

A small FastAPI app with the gateway's error handlers and one route whose endpoint records how it
was reached; the live gateway's routes (which go through the same class) are covered by
``test_relay_openai.py`` and the fuzz tests.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.testclient import TestClient

from mnemos.errors import RateLimitError
from mnemos.relay._errors import install_error_handlers
from mnemos.relay._fastpath import OpenAIFastPath


class Body(BaseModel):
    model: str = Field(min_length=1)
    n: int = Field(1, ge=1, strict=True)


def _app(calls: list[dict[str, Any]], raise_: BaseException | None = None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    routes: dict[str, Any] = {}
    app.add_middleware(OpenAIFastPath, fastapi=app, routes=routes)

    @app.post("/v1/thing")
    async def thing(body: Body, request: Request) -> Response:
        # FastAPI routed the request when it set the route in the scope; the fast path never does
        calls.append({"routed": "route" in request.scope, "model": body.model, "json": await request.json(),
                      "raw": await request.body()})  # fmt: skip
        if raise_ is not None:
            raise raise_
        return Response(b'{"ok": true}', media_type="application/json")

    routes["/v1/thing"] = (Body, thing)
    return app


def test_a_well_formed_request_is_served_without_fastapis_routing() -> None:
    calls: list[dict[str, Any]] = []
    client = TestClient(_app(calls))
    response = client.post("/v1/thing", content=b'{"model": "m", "n": 2}',
                           headers={"content-type": "application/json; charset=utf-8"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert calls == [{"routed": False, "model": "m", "json": {"model": "m", "n": 2}, "raw": b'{"model": "m", "n": 2}'}]


@pytest.mark.parametrize(("content", "content_type", "status"), [
    (b'{"model": ""}', "application/json", 422),  # invalid: FastAPI's error, in the gateway's words
    (b'{"model": "m", "n": "2"}', "application/json", 422),  # strict, as FastAPI validates
    (b"[1]", "application/json", 422),
    (b"{oops", "application/json", 400),
    (b'{"model": "m"}', "text/plain", 415),  # not declared JSON: FastAPI does not parse it
    (b'{"model": "m"}', "application/vnd.x+json", 200),  # FastAPI parses +json types; served by it
])  # fmt: skip
def test_anything_else_goes_on_to_fastapi_unchanged(content: bytes, content_type: str, status: int) -> None:
    calls: list[dict[str, Any]] = []
    response = TestClient(_app(calls)).post("/v1/thing", content=content, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert all(call["routed"] for call in calls)  # when the endpoint ran at all, FastAPI routed it
    if status != 200:
        assert set(response.json()["error"]) >= {"message", "type", "code"}


def test_a_get_and_other_paths_are_fastapis() -> None:
    calls: list[dict[str, Any]] = []
    client = TestClient(_app(calls))
    assert client.get("/v1/thing").status_code == 405
    assert client.post("/v1/other", json={"model": "m"}).status_code == 404
    assert calls == []


def test_an_endpoints_exception_gets_the_applications_handler() -> None:
    calls: list[dict[str, Any]] = []
    refused = RateLimitError("slow down", param="rpm", retry_after=2.0)
    response = TestClient(_app(calls, raise_=refused)).post("/v1/thing", json={"model": "m"})
    assert response.status_code == 429
    assert response.json()["error"]["param"] == "rpm" and response.headers["retry-after"] == "2"
    assert calls[0]["routed"] is False


def test_an_unexpected_exception_reaches_the_server_error_middleware_as_before() -> None:
    """Starlette answers the catch-all ``Exception`` handler from its outermost middleware, which
    also raises the exception again for the server to log: so does a fast-path request."""
    calls: list[dict[str, Any]] = []
    app = _app(calls, raise_=RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        TestClient(app).post("/v1/thing", json={"model": "m"})
    response = TestClient(app, raise_server_exceptions=False).post("/v1/thing", json={"model": "m"})
    assert response.status_code == 500 and response.json()["error"]["type"] == "server_error"
    assert [call["routed"] for call in calls] == [False, False]


def _behind_the_edge(calls: list[dict[str, Any]]) -> Any:
    """The fast path and its app behind the gateway's edge (authentication off), as ``create_app`` stacks them."""
    from mnemos.relay._edge import EdgeMiddleware

    app = _app(calls)
    app.build_middleware_stack()  # (what Starlette builds on its first request)
    seam = SimpleNamespace(enabled=False, public_paths=(), max_body_bytes=1 << 20, max_file_bytes=1 << 20)
    return EdgeMiddleware(app, seam)  # type: ignore[arg-type]


def test_the_body_the_edge_parsed_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge parses every JSON body to check it (repeated keys, lone surrogates, depth) and leaves
    the value to the fast path, which parsed the same bytes a second time; a body over 64 KiB is
    parsed again rather than have its value held beside its bytes for the whole request."""
    from mnemos.relay import _fastpath

    parses: list[bytes] = []

    def loads(raw: bytes) -> Any:
        parses.append(raw)
        return json.loads(raw)

    monkeypatch.setattr(_fastpath, "json", SimpleNamespace(loads=loads))
    calls: list[dict[str, Any]] = []
    client = TestClient(_behind_the_edge(calls))
    small = b'{"model": "m", "n": 2}'
    assert client.post("/v1/thing", content=small, headers={"content-type": "application/json"}).status_code == 200
    assert calls[-1] == {"routed": False, "model": "m", "json": {"model": "m", "n": 2}, "raw": small}
    assert parses == []
    large = json.dumps({"model": "m" * (70 << 10)}).encode()
    assert client.post("/v1/thing", content=large, headers={"content-type": "application/json"}).status_code == 200
    assert calls[-1]["routed"] is False and calls[-1]["model"] == "m" * (70 << 10)
    assert parses == [large]


def test_a_parsed_value_of_other_bytes_is_not_taken() -> None:
    """The value is taken only for the very bytes the route reads: a value of other bytes (a
    middleware between them that rewrote the body) is ignored."""
    from mnemos.relay._responses import PARSED_BODY

    calls: list[dict[str, Any]] = []
    app = _app(calls)

    async def stale(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope[PARSED_BODY] = (b'{"model": "other"}', {"model": "other"})
        await app(scope, receive, send)

    response = TestClient(stale).post("/v1/thing", content=b'{"model": "m"}',
                                      headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 200 and calls[-1]["model"] == "m"
