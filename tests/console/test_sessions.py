"""Console sessions end with the credential that opened them, and every way out of a session revokes
its token (no cluster: the console's router over an edge guard with a local rate limiter).

Revocations are re-read on every request here (``refresh_s=0``); the gateway re-reads them every
second, which ``tests/security/test_sessions.py`` checks over real HTTP.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from console_support import local_edge
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mnemos.errors import AuthenticationError
from mnemos.relay.console.session import COOKIE, Sessions, csrf_token
from mnemos.synkron._models import run_async  # (asyncio.run fails where a browser test left a loop running)


@pytest.fixture()
def console(tmp_path: Path) -> dict[str, Any]:
    """The console's routes (no gateway: only sign-in and sign-out are used) and its edge seam."""
    from mnemos.relay.console.app import build_router
    from mnemos.soul import IdentityStore

    settings, engram, edge = local_edge(tmp_path)
    app = FastAPI()
    app.include_router(build_router(None, edge))
    return {"http": TestClient(app), "edge": edge, "store": IdentityStore.from_settings(settings, engram)}


def _verify(console: dict[str, Any], credential: str) -> Any:
    return run_async(lambda: console["edge"].guard.verify_credential(credential))


def _sign_in(console: dict[str, Any], key: str) -> str:
    signed_in = console["http"].post("/ui/signin", data={"api_key": key}, follow_redirects=False)
    assert signed_in.status_code == 303, signed_in.text
    return str(signed_in.cookies[COOKIE])


def test_revoking_the_key_ends_the_sessions_it_opened(console: dict[str, Any]) -> None:
    store = console["store"]
    key = store.create_api_key("ann", "viewer")
    cookie = _sign_in(console, key.secret)
    session = _verify(console, cookie)
    assert (session.subject, session.kind, session.parents) == ("ann", "token", (key.id,))

    store.revoke(key.id)
    with pytest.raises(AuthenticationError) as refused:
        _verify(console, cookie)
    assert key.id in refused.value.message and "revoked" in refused.value.message
    listed = {d["id"]: d["state"] for d in store.list(include_inactive=True)}
    assert listed[session.credential_id] == "revoked"  # the listing says so too
    assert session.credential_id not in {d["id"] for d in store.list()}


def test_a_session_of_an_expiring_key_ends_before_the_key_does(console: dict[str, Any]) -> None:
    from mnemos.soul.tokens import LEEWAY_SECONDS

    key = console["store"].create_api_key("bob", "viewer", ttl=3600)
    session = _verify(console, _sign_in(console, key.secret))
    # Verifiers accept a token LEEWAY_SECONDS past its exp: it is issued to be refused with the key.
    assert session.expires_at + LEEWAY_SECONDS <= key.expires_at
    soon = console["store"].create_api_key("cy", "viewer", ttl=LEEWAY_SECONDS / 2)
    refused = console["http"].post("/ui/signin", data={"api_key": soon.secret}, follow_redirects=False)
    assert refused.status_code == 401 and "expires within" in refused.text


def test_the_sign_in_page_revokes_the_session_whose_cookie_it_drops(console: dict[str, Any]) -> None:
    key = console["store"].create_api_key("dee", "viewer")
    cookie = _sign_in(console, key.secret)
    page = console["http"].get("/ui/signin")
    assert page.status_code == 200 and COOKIE not in console["http"].cookies
    with pytest.raises(AuthenticationError, match="has been revoked"):
        _verify(console, cookie)
    _verify(console, key.secret)  # the key itself stays valid


def test_a_new_sign_in_revokes_the_session_it_replaces(console: dict[str, Any]) -> None:
    key = console["store"].create_api_key("eve", "viewer")
    first = _sign_in(console, key.secret)
    second = _sign_in(console, key.secret)
    assert first != second
    with pytest.raises(AuthenticationError, match="has been revoked"):
        _verify(console, first)
    assert _verify(console, second).subject == "eve"


@pytest.mark.parametrize("csrf", ["guess", None, "match"])
def test_sign_out_revokes_the_session_whatever_the_forms_csrf_token(console: dict[str, Any], csrf: str | None) -> None:
    key = console["store"].create_api_key("fay", "viewer")
    cookie = _sign_in(console, key.secret)
    form = {} if csrf is None else {"csrf": csrf_token(cookie) if csrf == "match" else csrf}
    out = console["http"].post("/ui/signout", data=form, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/signin"
    assert COOKIE not in console["http"].cookies
    with pytest.raises(AuthenticationError, match="has been revoked"):
        _verify(console, cookie)


def test_sign_out_ends_sessions_never_api_keys(console: dict[str, Any]) -> None:
    key = console["store"].create_api_key("gil", "viewer")
    principal = _verify(console, key.secret)
    run_async(lambda: Sessions(console["edge"]).sign_out(principal))  # a key put in the cookie
    assert _verify(console, key.secret).subject == "gil"


def test_a_token_with_a_malformed_parent_claim_is_refused(console: dict[str, Any]) -> None:
    import jwt

    from mnemos.soul.keys import ALGORITHM

    ring = console["store"].keyring
    record = ring.active()
    now = int(time.time())
    for par in ("0123456789abcdef", [1], ["x" * 65], ["a"] * 9):
        claims = {"iss": console["store"].issuer, "sub": "h", "role": "viewer", "iat": now, "exp": now + 60,
                  "jti": "tok-000000000000", "par": par}  # fmt: skip
        token = jwt.encode(claims, ring.private_key(record), algorithm=ALGORITHM, headers={"kid": record.kid})
        with pytest.raises(AuthenticationError, match="invalid parent credentials"):
            _verify(console, token)


# -- forms from the console's own pages: relay.console.allowedOrigins ------------------------------
PUBLIC = "https://mnemos.example.com"  # the TLS-terminating proxy's address; the gateway sees http://127.0.0.1


@pytest.fixture()
def proxied(tmp_path: Path) -> dict[str, Any]:
    """The console behind a TLS proxy: ``relay.console.allowedOrigins: [https://mnemos.example.com]``."""
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._edge import EdgeSeam
    from mnemos.relay.console.app import build_router
    from mnemos.soul import EdgeGuard, IdentityStore, LocalRateLimiter

    settings = load_settings(engram={"uri": str(tmp_path / "engram")},
                             relay={"auth": True, "console": {"allowedOrigins": [f"{PUBLIC}:443"]}})  # fmt: skip
    engram = Engram.from_settings(settings)
    edge = EdgeSeam(settings, engram)
    edge.guard = EdgeGuard(settings, engram, limiter=LocalRateLimiter(), refresh_s=0.0, max_stale_s=0.0)
    app = FastAPI()
    app.include_router(build_router(SimpleNamespace(settings=settings, engram=engram), edge))
    store = IdentityStore.from_settings(settings, engram)
    return {"http": TestClient(app, base_url="http://127.0.0.1:8000"), "key": store.create_api_key("ivy", "viewer")}


@pytest.mark.parametrize(("headers", "status"), [
    ({"origin": PUBLIC}, 303),
    ({"origin": f"{PUBLIC}:443"}, 303),  # the default port, written out
    ({"origin": "HTTPS://MNEMOS.example.com"}, 303),
    ({"referer": f"{PUBLIC}/ui/signin?x=1"}, 303),
    ({}, 303),  # neither header: no browser's cross-site form
    ({"origin": "http://mnemos.example.com"}, 403),  # the same host over plain http: another origin
    ({"origin": f"{PUBLIC}:8443"}, 403),
    ({"origin": "https://evil.example.com"}, 403),
    ({"origin": "https://mnemos.example.com.evil.example"}, 403),
    ({"origin": "http://127.0.0.1:8000"}, 403),  # the Host it was sent to: not listed, so not allowed
    ({"origin": "null"}, 403),
    ({"referer": "http://mnemos.example.com/ui/signin"}, 403),
])  # fmt: skip
def test_with_allowed_origins_a_form_must_come_from_one_of_them_exactly(
    proxied: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    posted = proxied["http"].post("/ui/signin", data={"api_key": proxied["key"].secret}, headers=headers,
                                  follow_redirects=False)  # fmt: skip
    assert posted.status_code == status, posted.text
    assert (COOKIE in posted.cookies) == (status == 303)


def test_without_allowed_origins_a_form_must_name_the_host_it_was_sent_to(console: dict[str, Any]) -> None:
    key = console["store"].create_api_key("jo", "viewer").secret
    for origin, status in (("http://testserver", 303), ("https://testserver:443", 303), ("http://other", 403),
                           ("null", 403)):  # fmt: skip
        posted = console["http"].post("/ui/signin", data={"api_key": key}, headers={"origin": origin},
                                      follow_redirects=False)  # fmt: skip
        assert posted.status_code == status, (origin, posted.text)


@pytest.mark.parametrize("origin", ["https://x.example/", "https://x.example/ui", "null", "ftp://x.example",
                                    "x.example", "https://user@x.example", "https://x.example:99999"])  # fmt: skip
def test_an_allowed_origin_that_is_not_an_origin_is_refused_naming_the_setting(origin: str) -> None:
    from mnemos.config import load_settings
    from mnemos.errors import ValidationError

    with pytest.raises(ValidationError, match="relay.console.allowedOrigins") as refused:
        load_settings(relay={"console": {"allowedOrigins": [origin]}})
    assert "scheme://host[:port]" in refused.value.message


# -- a cookie that is no live session -------------------------------------------------------------
def test_a_cookie_that_is_no_live_session_gets_401_and_is_dropped(console: dict[str, Any]) -> None:
    """As without a cookie: the sign-in page with 401, on every page and on a write, and the cookie is
    cleared (revoked session, revoked key, expired or forged token)."""
    import jwt

    store, http = console["store"], console["http"]
    revoked = _sign_in(console, store.create_api_key("kim", "viewer").secret)
    http.cookies.clear()
    store.revoke(jwt.decode(revoked, options={"verify_signature": False})["jti"])
    key = store.create_api_key("lou", "viewer")
    orphaned = _sign_in(console, key.secret)
    http.cookies.clear()
    store.revoke(key.id)
    ring = store.keyring
    record = ring.active()
    now = int(time.time())
    expired = jwt.encode({"iss": store.issuer, "sub": "max", "role": "viewer", "iat": now - 600, "exp": now - 300,
                          "jti": "tok-0000000000ee"}, ring.private_key(record), algorithm="EdDSA",
                         headers={"kid": record.kid})  # fmt: skip
    forged = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJldmUifQ.Zm9yZ2Vk"
    none = {path: http.get(path) for path in ("/ui/models", "/ui/jobs", "/ui/keys", "/ui/runs/r", "/ui/audit")}
    assert {r.status_code for r in none.values()} == {401}
    for cookie in (revoked, orphaned, expired, forged):
        for path, without in none.items():
            http.cookies.clear()
            http.cookies.set(COOKIE, cookie)
            page = http.get(path)
            assert page.status_code == 401 and page.text == without.text, (path, page.text[:300])
            assert _dropped(page), page.headers
        http.cookies.clear()
        http.cookies.set(COOKIE, cookie)
        cancel = http.post("/ui/jobs/job-x/cancel", data={"csrf": csrf_token(cookie)})
        assert cancel.status_code == 401 and "API key" in cancel.text and _dropped(cancel)
    http.cookies.clear()


def _dropped(response: Any) -> bool:
    """Whether the response clears the session cookie."""
    return any(h.startswith(f'{COOKIE}="";') and "Max-Age=0" in h for h in response.headers.get_list("set-cookie"))


# -- refused sign-ins are audited as the API's refusals are -------------------------------------------
def test_a_refused_sign_in_is_audited_without_the_key(console: dict[str, Any]) -> None:
    from mnemos.trace.lineage import events

    key = console["store"].create_api_key("nia", "viewer")
    wrong = f"mk_{key.id}_{'W' * 43}"
    for attempt in (wrong, "not-a-key-at-all"):
        refused = console["http"].post("/ui/signin", data={"api_key": attempt}, follow_redirects=False)
        assert refused.status_code == 401 and COOKIE not in refused.cookies, refused.text
    run_async(lambda: console["edge"].guard.flush_audit())
    audit = [e["attrs"] for e in events(console["edge"].guard.engram) if e["type"] == "audit"]
    refusals = [a for a in audit if a["action"] == "auth.refused" and a["path"] == "/ui/signin"]
    assert [(a["status"], a["method"]) for a in refusals] == [(401, "POST")] * 2, audit
    assert key.id in refusals[0]["reason"]  # which key was refused, as the API's refusal says
    dumped = str(audit)
    assert "W" * 43 not in dumped and "not-a-key-at-all" not in dumped


def test_the_session_cookie_is_scoped_to_the_console(console: dict[str, Any]) -> None:
    key = console["store"].create_api_key("ora", "viewer")
    signed_in = console["http"].post("/ui/signin", data={"api_key": key.secret}, follow_redirects=False)
    cookies = signed_in.headers.get_list("set-cookie")
    live = [c for c in cookies if "Max-Age=0" not in c]
    assert len(live) == 1 and "Path=/ui;" in live[0] and "HttpOnly" in live[0], cookies
    # a cookie of the old scope (Path=/) is cleared, else the browser would send it after the new one
    assert any("Path=/;" in c and "Max-Age=0" in c for c in cookies), cookies
    out = console["http"].post("/ui/signout", follow_redirects=False)
    assert {"/ui", "/"} <= {p.split("=", 1)[1] for c in out.headers.get_list("set-cookie")
                            for p in (s.strip() for s in c.split(";")) if p.startswith("Path=")}  # fmt: skip
