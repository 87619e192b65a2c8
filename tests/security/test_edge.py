"""The edge, as an attacker meets it: 401 before anything is parsed, 413 for a streamed body while
it is still arriving, every bad token refused, and no credential minting above its own level."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from security_support import Gateway
from tests_support import until

BAD_CHAT = {"model": 3, "messages": "not a list"}


def _status(resp: httpx.Response, status: int, needle: str = "") -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert needle in error["message"], error
    return dict(error)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/chat/completions", BAD_CHAT),
        ("POST", "/v1/completions", {"prompt": []}),
        ("POST", "/v1/embeddings", {"input": 3}),
        ("POST", "/v1/jobs", {"function": 7}),
        ("POST", "/v1/pipelines/echo-text/runs", {"params": "x"}),
        ("POST", "/v1/tokens", {"role": 1}),
        ("POST", "/apis/genome.mnemos.dev/v1/models", {"kind": 1}),
    ],
)
def test_401_before_the_body_is_looked_at(gateway: Gateway, method: str, path: str, body: Any) -> None:
    _status(gateway.call(method, path, json=body), 401, "missing credentials")
    _status(gateway.call(method, path, "mk_0123456789abcdef_wrong", json=body), 401)
    _status(gateway.call(method, path, json=body, content=None), 401)
    # malformed JSON too: never a 400 before authentication
    raw = gateway.call(method, path, headers={"content-type": "application/json"}, content=b"{nope")
    _status(raw, 401, "missing credentials")


def test_two_authorization_headers_are_refused_whichever_comes_first(gateway: Gateway) -> None:
    """Proxies and servers disagree on which of two ``Authorization`` headers counts (a viewer's
    key before an operator's was a 403, the other way round a 200): neither does."""
    viewer, admin = (f"Bearer {gateway.keys[who]}" for who in ("viewer", "admin"))
    for first, second in ((viewer, admin), (admin, viewer), (admin, admin)):
        answer = httpx.get(f"{gateway.url}/v1/secrets", headers=[("Authorization", first), ("Authorization", second)],
                           timeout=60)  # fmt: skip
        error = _status(answer, 401, "2 Authorization headers: send one")
        assert error["param"] == "authorization", error
    assert gateway.call("GET", "/v1/secrets", "admin").status_code == 200


def test_403_before_422_and_422_once_admitted(gateway: Gateway) -> None:
    _status(gateway.call("POST", "/v1/chat/completions", "viewer", json=BAD_CHAT), 403, "infer")
    _status(gateway.call("POST", "/v1/jobs", "viewer", content=b"{nope"), 403, "submit")
    assert gateway.call("POST", "/v1/chat/completions", "developer", json=BAD_CHAT).status_code == 422


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "nobody", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"model": "nobody", "prompt": "hi"}),
    ("/v1/embeddings", {"model": "nobody", "input": "hi"}),
])  # fmt: skip
def test_well_formed_openai_requests_pass_the_edge_before_their_fast_path(gateway: Gateway, path: str,
                                                                           body: dict[str, Any]) -> None:  # fmt: skip
    """A well-formed body skips FastAPI's routing (``mnemos/relay/_fastpath.py``), never the edge:
    no credential is a 401 and a viewer's key a 403 there too; a developer's reaches the endpoint."""
    _status(gateway.call("POST", path, json=body), 401, "missing credentials")
    _status(gateway.call("POST", path, "viewer", json=body), 403, "infer")
    _status(gateway.call("POST", path, "developer", json=body), 404, "`nobody` does not exist")


def _chunks(total: int, size: int, sent: list[int]) -> Iterator[bytes]:
    block = b"x" * size
    while sent[0] < total:
        sent[0] += size
        time.sleep(0.01)
        yield block


def test_a_chunked_64_mib_body_is_refused_while_it_arrives(gateway: Gateway) -> None:
    total, size = 64 * 1024 * 1024, 64 * 1024
    host, port = gateway.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {gateway.keys['developer']}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    sent, answer = 0, b""
    chunk = f"{size:x}\r\n".encode() + b"x" * size + b"\r\n"
    with contextlib.suppress(OSError):  # the server may close (reset) once it has answered
        while sent < total and not answer:
            if select.select([sock], [], [], 0)[0]:
                answer += sock.recv(65536)
                break
            sock.sendall(chunk)
            sent += size
            time.sleep(0.01)  # ~6 MB/s: the proxy in front would otherwise swallow 64 MiB in a blink
        deadline = time.monotonic() + 60
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), (sent, answer[:300])
    assert sent < total, "the server answered only once the whole body was sent"

    # the same with httpx streaming from a generator: 413 (or the connection closed on the sender)
    counter = [0]
    try:
        resp = httpx.post(gateway.url + "/v1/chat/completions", content=_chunks(total, size, counter),
                          headers={"Authorization": f"Bearer {gateway.keys['developer']}"}, timeout=120)  # fmt: skip
        _status(resp, 413, "exceeds the limit")
    except httpx.TransportError:
        assert counter[0] < total


def test_declared_oversize_body_is_413_without_reading(gateway: Gateway) -> None:
    resp = gateway.call("POST", "/v1/chat/completions", "developer", content=b"x" * (2 * 1024 * 1024),
                        headers={"content-type": "application/json"})  # fmt: skip
    _status(resp, 413, "exceeds the limit")
    # A Content-Length of thousands of digits: HTTP servers in front refuse it, but the edge must
    # not depend on them (int() of 4,300 digits or more raises: a 500), so it is checked directly.
    from mnemos.errors import PayloadTooLargeError
    from mnemos.relay._edge import _body_headers

    with pytest.raises(PayloadTooLargeError, match="a 5000-digit number of bytes exceeds the limit"):
        _body_headers({"headers": [(b"content-length", b"9" * 5000)]}, 1024)


def test_forged_expired_revoked_and_wrong_issuer_tokens(gateway: Gateway) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mnemos.soul.tokens import issue_token

    store, issuer = gateway.store, gateway.settings.soul.jwt.issuer
    good = store.create_token("tok-user", "developer").secret
    assert gateway.call("GET", "/v1/models", good).status_code == 200
    claims = jwt.decode(good, options={"verify_signature": False})
    kid = jwt.get_unverified_header(good)["kid"]
    forged = jwt.encode({**claims, "role": "admin"}, Ed25519PrivateKey.generate(), algorithm="EdDSA",
                        headers={"kid": kid})  # fmt: skip
    expired = issue_token(store.keyring, subject="tok-user", role="developer", issuer=issuer, ttl=60,
                          now=time.time() - 7200).token  # fmt: skip
    wrong_issuer = issue_token(store.keyring, subject="tok-user", role="admin", issuer="evil.example").token
    none_alg = jwt.encode({**claims, "role": "admin"}, None, algorithm="none")
    revoked = store.create_token("tok-user", "developer")
    store.revoke(revoked.id)

    def refused(token: str) -> httpx.Response:  # revocations reach the gateway within seconds
        return until(lambda: gateway.call("GET", "/v1/models", token), "a 401", ready=lambda r: r.status_code == 401,
                     timeout=15, interval=0.3)  # fmt: skip

    for token, reason in ((forged, "signature"), (expired, "expired"), (wrong_issuer, "issuer"),
                          (none_alg, "algorithm"), (revoked.secret, "revoked")):  # fmt: skip
        resp = refused(token)
        error = _status(resp, 401, reason)
        assert token not in resp.text and error["type"] == "authentication_error"


def test_no_credential_mints_above_itself(gateway: Gateway) -> None:
    def mint(who: str, **body: Any) -> httpx.Response:
        return gateway.call("POST", "/v1/tokens", who, json={"name": "minted", **body})

    for who in ("developer", "operator", "viewer"):
        _status(mint(who, role="admin"), 403, "manage-identities")
    # an admin credential narrowed to managing identities cannot mint a full admin (nor any verb it lacks)
    scoped = gateway.store.create_token("scoped-admin", "admin", scopes=["manage-identities"], ttl=600).secret
    _status(mint(scoped, role="admin"), 403, "at or below")
    _status(mint(scoped, role="developer"), 403, "at or below")
    _status(mint(scoped, role="admin", scopes=["manage-identities", "execute"]), 403, "execute")
    # nor outlive itself, nor exceed the platform's maximum token lifetime
    _status(mint(scoped, role="admin", scopes=["manage-identities"], ttl="2h"), 403, "outlive")
    _status(mint(scoped, role="admin", scopes=["manage-identities"], apiKey=True), 403, "outlive")
    _status(mint("admin", role="viewer", ttl="30d"), 422, "maxTokenTTL")
    ok = mint(scoped, role="admin", scopes=["manage-identities"], ttl="5m")
    assert ok.status_code == 201, ok.text
    assert mint("admin", role="viewer", ttl="1h").status_code == 201  # the positive control


def test_team_and_limits_are_minted_only_by_identity_managers_and_within_their_own(gateway: Gateway) -> None:
    body = {"name": "self-limits", "role": "viewer", "apiKey": True, "team": "blue", "limits": {"rpm": 100_000}}

    def mint(who: str, **changes: Any) -> httpx.Response:
        return gateway.call("POST", "/v1/tokens", who, json={**body, **changes})

    for who in ("developer", "viewer"):  # a key of one's own with another team or more requests
        _status(mint(who), 403, "manage-identities")
    capped = gateway.store.create_api_key("capped-admin", "admin", team="red", limits={"rpm": 60}).secret
    _status(mint(capped, limits={"rpm": 60}), 403, "team")  # another team than the caller's
    _status(mint(capped, team="red"), 403, "limits.rpm")  # more than the caller holds
    _status(mint(capped, team="red", limits={"rpm": None}), 403, "limits.rpm")  # null is not unlimited
    assert not [c for c in gateway.store.list() if c["name"] == "self-limits"]  # nothing half-made
    ok = mint(capped, team="red", limits={"rpm": 30})  # the positive control
    assert ok.status_code == 201, ok.text


def test_node_addresses_are_shown_to_operators_only(gateway: Gateway) -> None:
    for who in ("developer", "viewer"):
        status = gateway.call("GET", "/v1/status", who)
        assert status.status_code == 200, status.text
        nodes = status.json()["nodes"]
        assert nodes and all("address" not in n for n in nodes), nodes
    assert all(n["address"] for n in gateway.call("GET", "/v1/status", "operator").json()["nodes"])


def test_metrics_are_public_by_default_and_protected_with_the_setting(gateway: Gateway) -> None:
    assert gateway.call("GET", "/metrics").status_code == 200  # trace.metricsAuth is off here
    from fastapi import FastAPI, HTTPException
    from fastapi.testclient import TestClient

    from mnemos.config import load_settings
    from mnemos.trace.http import build_router

    async def deny() -> None:
        raise HTTPException(401, "no")

    app = FastAPI()
    app.include_router(build_router(auth=deny, settings=load_settings(trace={"metricsAuth": True})))
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
    route = next(r for r in app.routes if getattr(r, "path", "") == "/metrics")
    assert route.openapi_extra == {"x-mnemos-verb": "read-lineage"}  # the gateway's edge authorizes it


def test_minting_refuses_scopes_the_role_lacks_and_lifetimes_no_clock_keeps(gateway: Gateway) -> None:
    def mint(**body: Any) -> httpx.Response:
        return gateway.call("POST", "/v1/tokens", "admin", json={"name": "probe-mint", "role": "viewer", **body})

    error = _status(mint(scopes=["submit"]), 422, "role 'viewer' does not hold 'submit'")
    assert error["param"] == "scopes"
    _status(mint(scopes=["read-lineage", "deploy"], apiKey=True), 422, "'deploy'")
    for ttl in ("1000000000000d", 3.2e9, "36600d"):  # past 100 years: an expiry no calendar shows
        error = _status(mint(apiKey=True, ttl=ttl), 422, "longest lifetime")
        assert error["param"] == "ttl" and "100 years" in error["message"]
    for ttl in ("500ms", 1e-9, "0.999s"):  # expired as it is issued
        for kind in (True, False):
            error = _status(mint(apiKey=kind, ttl=ttl), 422, "shortest lifetime")
            assert error["param"] == "ttl" and "at least 1s" in error["message"]
    assert not [c for c in gateway.store.list(include_inactive=True) if c["name"] == "probe-mint"]  # nothing made
    for body in ({"scopes": ["read-lineage"], "apiKey": True, "ttl": "36500d"}, {"ttl": "1s"}):  # the controls
        made = mint(**body)
        assert made.status_code == 201, made.text
        gateway.call("DELETE", f"/v1/tokens/{made.json()['id']}", "admin")
