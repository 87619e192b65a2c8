"""The console's Keys page lists the credentials ``GET /v1/tokens`` lists to the same caller, and tells
console sessions apart from tokens as ``mnemos token list`` does (KIND ``session``,
docs/guides/console.md): an admin reading it sees which "tokens" are people signed in."""

from __future__ import annotations

import re

import httpx
from security_support import Gateway

COOKIE = "mnemos_session"


def test_the_keys_page_lists_sessions_as_sessions(gateway: Gateway) -> None:
    signed_in = httpx.post(f"{gateway.url}/ui/signin", data={"api_key": gateway.keys["admin"]}, follow_redirects=False,
                           timeout=60)  # fmt: skip
    assert signed_in.status_code == 303, signed_in.text[-1000:]
    cookie = str(signed_in.cookies[COOKIE])
    try:
        page = httpx.get(f"{gateway.url}/ui/keys", cookies={COOKIE: cookie}, timeout=60)
        assert page.status_code == 200, page.text[-600:]
        shown = dict(re.findall(r"<tr><td><code>([^<]+)</code></td><td>([^<]+)</td>", page.text))
        listed = gateway.call("GET", "/v1/tokens", "admin").json()["data"]
        assert set(shown) == {d["id"] for d in listed}  # the same credentials as the API lists
        expected = {d["id"]: "session" if d.get("audience") == "console" else d["kind"] for d in listed}
        assert "session" in expected.values()  # this sign-in's own session, at least
        assert shown == expected
    finally:
        httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)
