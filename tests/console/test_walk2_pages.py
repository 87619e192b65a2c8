"""The console answers every refusal as a page (no cluster: the console mounted as the gateway
mounts it, over an edge guard with a local rate limiter; only what answers before the event bus is
read is used).

- ``GET /ui/signout``, a query that does not parse (``/ui/models/x?a=abc``), a method a page does
  not take, a path no page lives at and a static file that is not there answered the API's JSON;
  they are now pages with the same status, saying what was wrong and linking back. ``GET
  /ui/signout`` shows the sign-out button (signing out stays a ``POST``: a link on another site
  cannot sign anyone out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from console_support import local_edge
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mnemos.relay.console.session import COOKIE


@pytest.fixture()
def gateway(tmp_path: Path) -> dict[str, Any]:
    """``/v1/events`` and the console on one app, as ``ingress.create_app`` builds them."""
    from mnemos.relay._edge import EdgeMiddleware
    from mnemos.relay._errors import install_error_handlers
    from mnemos.relay.console import mount
    from mnemos.relay.event_stream import build_router
    from mnemos.soul import IdentityStore

    settings, engram, edge = local_edge(tmp_path)
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(EdgeMiddleware, seam=edge)
    app.include_router(build_router(edge.admit, max_streams=4))
    mount(app, None, edge)
    edge.install_routes(app)
    return {"http": TestClient(app), "store": IdentityStore.from_settings(settings, engram)}


def _sign_in(gateway: dict[str, Any], name: str) -> Any:
    key = gateway["store"].create_api_key(name, "viewer")
    signed_in = gateway["http"].post("/ui/signin", data={"api_key": key.secret}, follow_redirects=False)
    assert signed_in.status_code == 303 and COOKIE in gateway["http"].cookies, signed_in.text
    return key


def test_the_console_stream_of_an_ended_session_stays_a_401(gateway: dict[str, Any]) -> None:
    """A stream without a live session is refused like any unauthenticated request (the page's script
    tells a 401 from other refusals by asking for its own URL: ``test_walk2_live_feed.py``)."""
    http = gateway["http"]
    key = _sign_in(gateway, "rae")
    gateway["store"].revoke(key.id)  # the session dies with its key while the page's stream is away
    for cookie in (None, "forged"):
        refused = http.get("/ui/events", params={"types": "job"})
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        assert http.get("/ui/models").status_code == 401  # what the page asks when its stream is refused
        http.cookies.clear()
        if cookie:
            http.cookies.set(COOKIE, cookie, path="/ui")


def test_get_sign_out_shows_the_sign_out_button_and_signs_no_one_out(gateway: dict[str, Any]) -> None:
    http = gateway["http"]
    _sign_in(gateway, "sam")
    page = http.get("/ui/signout")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text
    assert '<form class="signin" method="post" action="/ui/signout">' in page.text
    assert http.get("/ui/signout").status_code == 200  # still signed in: a GET ended nothing
    out = http.post("/ui/signout", data={}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/signin"
    signed_out = http.get("/ui/signout")
    assert signed_out.status_code == 401 and 'name="api_key"' in signed_out.text


@pytest.mark.parametrize(("method", "path", "status", "says", "back"), [
    ("GET", "/ui/models/echo?a=abc", 422, "a: Input should be a valid integer", "/ui/models/echo"),
    ("GET", "/ui/models/echo?b=1.5", 422, "b: Input should be a valid integer", "/ui/models/echo"),
    ("POST", "/ui/models", 405, "POST is not allowed here; this page takes GET, HEAD", "/ui/models"),
    ("DELETE", "/ui/signout", 405, "this page takes GET, HEAD, POST", "/ui/models"),
    ("GET", "/ui/no-such-page", 404, "There is no console page at /ui/no-such-page", "/ui/models"),
    ("POST", "/ui/no/such/page", 404, "There is no console page at /ui/no/such/page", "/ui/models"),
])  # fmt: skip
def test_a_refused_page_is_a_page_saying_why_and_linking_back(gateway: dict[str, Any], method: str, path: str,
                                                              status: int, says: str, back: str) -> None:  # fmt: skip
    _sign_in(gateway, "tim")
    answer = gateway["http"].request(method, path)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html"), answer.text
    assert says in answer.text and f'<a href="{back}">' in answer.text
    assert answer.headers["x-frame-options"] == "DENY"
    if status == 405:
        assert says.rsplit("takes ", 1)[1] == answer.headers["allow"]


def test_the_api_and_the_consoles_stream_still_answer_json(gateway: dict[str, Any]) -> None:
    key = _sign_in(gateway, "uma")
    auth = {"Authorization": f"Bearer {key.secret}"}
    for path in ("/v1/events?foo=1", "/ui/events?foo=1"):
        answer = gateway["http"].get(path, headers=auth)
        assert answer.status_code == 422 and answer.json()["error"]["param"] == "foo", answer.text
    assert gateway["http"].get("/v1/no-such-route", headers=auth).json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("method", "path", "status", "says"), [
    ("GET", "/ui/static/no-such-file.css", 404, "There is no console file at /ui/static/no-such-file.css"),
    ("GET", "/ui/static/", 404, "There is no console file at /ui/static/"),
    ("POST", "/ui/static/console.css", 405, "POST is not allowed here; this file takes GET, HEAD"),
])  # fmt: skip
def test_a_missing_console_file_is_the_consoles_page(gateway: dict[str, Any], method: str, path: str, status: int,
                                                     says: str) -> None:  # fmt: skip
    """Static files were plain ``StaticFiles``, whose refusals the API's handler answered as JSON."""
    answer = gateway["http"].request(method, path)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html"), answer.text
    assert says in answer.text and '<a href="/ui/models">' in answer.text
    assert answer.headers["x-frame-options"] == "DENY"
    if status == 405:
        assert answer.headers["allow"] == "GET, HEAD"


def test_a_console_file_that_is_there_is_served(gateway: dict[str, Any]) -> None:
    answer = gateway["http"].get("/ui/static/console.css")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/css"), answer.text
