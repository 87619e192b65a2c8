"""Console sessions over real HTTP, as the probe met them: a session cookie dies with the API key
that opened it (on the console's event stream through ``CookieBearer`` and on the console's pages),
and the pages render credentials whatever expiry is stored."""

from __future__ import annotations

import time

import httpx
from security_support import Gateway
from tests_support import until

COOKIE = "mnemos_session"
ENDED = 20.0  # seconds: revocations reach every replica within about a second


def _sign_in(gateway: Gateway, key: str) -> str:
    signed_in = httpx.post(f"{gateway.url}/ui/signin", data={"api_key": key}, follow_redirects=False, timeout=60)
    assert signed_in.status_code == 303, signed_in.text
    return str(signed_in.cookies[COOKIE])


def _with_cookie(gateway: Gateway, path: str, cookie: str) -> httpx.Response:
    return httpx.get(gateway.url + path, cookies={COOKIE: cookie}, timeout=60)


def _stream(gateway: Gateway, cookie: str) -> tuple[int, str]:
    """The status of the console's event stream with the cookie, and its error message when refused
    (the stream itself is closed once its headers arrive)."""
    with httpx.stream("GET", f"{gateway.url}/ui/events", cookies={COOKIE: cookie}, timeout=60) as answer:
        return answer.status_code, answer.read().decode() if answer.status_code != 200 else ""


def test_revoking_an_api_key_ends_the_console_sessions_it_opened(gateway: Gateway) -> None:
    key = gateway.store.create_api_key("probe-session", "viewer")
    cookie = _sign_in(gateway, key.secret)
    assert _stream(gateway, cookie)[0] == 200
    page = _with_cookie(gateway, "/ui/models", cookie)
    assert page.status_code == 200 and "probe-session" in page.text

    revoked = gateway.call("DELETE", f"/v1/tokens/{key.id}", "admin")
    assert revoked.status_code == 200, revoked.text
    until(lambda: gateway.call("GET", "/v1/whoami", key.secret).status_code == 401, "the key refused",
          timeout=ENDED, interval=0.25)  # fmt: skip
    until(lambda: _stream(gateway, cookie)[0] == 401, "the session's stream refused", timeout=ENDED, interval=0.25)
    assert key.id in _stream(gateway, cookie)[1]
    page = _with_cookie(gateway, "/ui/models", cookie)
    assert page.status_code == 401 and "API key" in page.text  # the sign-in page


def test_the_sign_in_page_ends_the_session_whose_cookie_it_drops(gateway: Gateway) -> None:
    key = gateway.store.create_api_key("probe-resign", "viewer")
    cookie = _sign_in(gateway, key.secret)
    assert _stream(gateway, cookie)[0] == 200
    assert _with_cookie(gateway, "/ui/signin", cookie).status_code == 200
    until(lambda: _stream(gateway, cookie)[0] == 401, "the session's stream refused", timeout=ENDED, interval=0.25)
    assert gateway.call("GET", "/v1/whoami", key.secret).status_code == 200  # the key itself stays valid
    # a sign-out whose form carries a wrong CSRF token still ends the session
    cookie = _sign_in(gateway, key.secret)
    out = httpx.post(f"{gateway.url}/ui/signout", data={"csrf": "guess"}, cookies={COOKIE: cookie},
                     follow_redirects=False, timeout=60)  # fmt: skip
    assert out.status_code == 303
    until(lambda: _stream(gateway, cookie)[0] == 401, "the session's stream refused", timeout=ENDED, interval=0.25)


def test_a_stored_expiry_no_calendar_shows_is_rendered_not_a_500(gateway: Gateway) -> None:
    from mnemos.soul.apikeys import APIKEYS_PREFIX, ApiKeyRecord

    # What POST /v1/tokens stored before it refused a ttl of 10^12 days: expiresAt 8.64e16.
    record = ApiKeyRecord(id="00000000000000ff", name="probe-forever", role="viewer", hash="sha256:0",
                          created_at=time.time(), expires_at=8.64e16)  # fmt: skip
    path = f"{APIKEYS_PREFIX}/{record.id}.json"
    gateway.store.engram.write_json(path, record.to_doc())
    cookie = _sign_in(gateway, gateway.keys["admin"])
    try:
        keys = _with_cookie(gateway, "/ui/keys", cookie)
        assert keys.status_code == 200, keys.text[-2000:]
        assert "probe-forever" in keys.text and "8.64e+16" in keys.text
        listed = gateway.call("GET", "/v1/tokens", "admin")
        assert listed.status_code == 200 and any(d["id"] == record.id for d in listed.json()["data"])
    finally:
        gateway.store.engram.delete(path)
        httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)
