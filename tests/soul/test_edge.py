"""The edge guard on a real HTTP app: every refusal is a 401/403/413 with a clear body and an audit
event, and never echoes the credential."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from tests_support import until

from mnemos.soul.tokens import issue_token
from mnemos.trace.lineage import events


@pytest.fixture()
def env(soul_env: dict[str, Any]) -> dict[str, Any]:
    return soul_env


def call(env: dict[str, Any], credential: str | None, path: str = "/v1/chat/completions", **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else {}
    headers.update(kw.pop("headers", {}))
    if path == "/v1/chat/completions" and "json" not in kw and "content" not in kw:
        kw["json"] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    method = "POST" if path in ("/v1/chat/completions", "/v1/deploy", "/v1/tokens") else "GET"
    return httpx.request(method, env["url"] + path, headers=headers, timeout=30, **kw)


def assert_refused(resp: httpx.Response, status: int, reason: str, credential: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert reason in error["message"], error
    if credential:
        assert credential not in resp.text
        # mk_<id>_<secret>: the secret itself may hold "_" (base64url), so split from the left
        secret_part = credential.split("_", 2)[-1] if credential.startswith("mk_") else credential.split(".")[-1]
        assert not secret_part or secret_part not in resp.text


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def test_health_is_public_and_every_other_route_needs_a_credential(env: dict[str, Any]) -> None:
    assert httpx.get(env["url"] + "/healthz").status_code == 200
    resp = call(env, None)
    assert_refused(resp, 401, "missing credentials")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.json()["error"]["type"] == "authentication_error"
    assert_refused(call(env, None, "/v1/lineage", headers={"Authorization": "Basic dXNlcjpwdw=="}), 401, "Bearer")


def test_jwt_refusals(env: dict[str, Any]) -> None:
    store, settings = env["store"], env["settings"]
    good = store.create_token("alice", "developer").secret
    assert call(env, good).json()["principal"] == "alice"

    assert_refused(call(env, "not-a-jwt"), 401, "malformed token")

    expired = issue_token(
        store.keyring, subject="alice", role="developer", issuer=settings.soul.jwt.issuer, now=time.time() - 7200
    ).token
    assert_refused(call(env, expired), 401, "expired", expired)

    head, payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    tampered = f"{head}.{_b64({**claims, 'role': 'admin'})}.{signature}"
    assert_refused(call(env, tampered), 401, "signature is invalid", tampered)

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    kid = jwt.get_unverified_header(good)["kid"]
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid})
    assert_refused(call(env, forged), 401, "signature is invalid", forged)

    wrong_issuer = issue_token(store.keyring, subject="alice", role="admin", issuer="evil.example").token
    assert_refused(call(env, wrong_issuer), 401, "issuer is not 'soul.mnemos'", wrong_issuer)

    unsigned = f"{_b64({'alg': 'none', 'kid': kid})}.{payload}."
    assert_refused(call(env, unsigned), 401, "algorithm", unsigned)

    unknown_kid = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "nope"})
    assert_refused(call(env, unknown_kid), 401, "unknown key", unknown_kid)


def wait_refused(env: dict[str, Any], credential: str, reason: str, within: float = 10.0) -> httpx.Response:
    """Revocation is eventually visible (the guard re-reads revocations every refresh_s)."""
    return until(lambda: call(env, credential), f"the credential refused ({reason})",
                 ready=lambda resp: resp.status_code != 200, timeout=within)  # fmt: skip


def test_revoked_jwt_is_refused_within_seconds(env: dict[str, Any]) -> None:
    created = env["store"].create_token("bob", "developer")
    assert call(env, created.secret).status_code == 200
    env["store"].revoke(created.id)
    assert_refused(wait_refused(env, created.secret, "revoked"), 401, "revoked", created.secret)


def test_api_key_refusals(env: dict[str, Any]) -> None:
    store = env["store"]
    key = store.create_api_key("ci-bot", "developer")
    assert call(env, key.secret).json()["principal"] == "ci-bot"

    key_id = key.secret.split("_")[1]
    wrong_secret = f"mk_{key_id}_{'A' * 43}"
    assert_refused(call(env, wrong_secret), 401, "is not valid", wrong_secret)
    unknown = f"mk_{'0' * 16}_{'B' * 43}"
    assert_refused(call(env, unknown), 401, "unknown API key", unknown)
    assert_refused(call(env, "mk_nounderscore"), 401, "malformed API key")

    expiring = store.create_api_key("short-lived", "developer", ttl=0.001)
    assert_refused(call(env, expiring.secret), 401, "expired", expiring.secret)

    store.revoke(key.id)
    assert_refused(wait_refused(env, key.secret, "revoked"), 401, "revoked", key.secret)


def test_rbac_on_routes(env: dict[str, Any]) -> None:
    store = env["store"]
    viewer = store.create_token("vera", "viewer").secret
    developer = store.create_token("dev", "developer").secret
    operator = store.create_api_key("ops", "operator").secret
    admin = store.create_api_key("root", "admin").secret

    assert_refused(call(env, viewer, "/v1/deploy"), 403, "role 'viewer' may not 'deploy'")
    assert call(env, viewer, "/v1/lineage").status_code == 200
    assert call(env, developer).status_code == 200  # infer
    assert_refused(call(env, developer, "/v1/deploy"), 403, "role 'developer' may not 'deploy'")
    new = {"name": "x", "role": "viewer"}
    assert_refused(call(env, developer, "/v1/tokens", json=new), 403, "may not 'manage-identities'")
    assert call(env, operator, "/v1/deploy").status_code == 200
    assert_refused(call(env, operator, "/v1/tokens", json=new), 403, "role 'operator' may not 'manage-identities'")
    assert call(env, admin, "/v1/tokens", json=new).status_code == 201
    assert call(env, viewer, "/v1/tokens", json=new).json()["error"]["type"] == "permission_error"

    scoped = store.create_api_key("reader", "developer", scopes=["read-lineage"]).secret
    assert call(env, scoped, "/v1/lineage").status_code == 200
    assert_refused(call(env, scoped), 403, "scoped to read-lineage and may not 'infer'")


def test_token_routes_create_list_revoke(env: dict[str, Any]) -> None:
    admin = env["store"].create_api_key("root", "admin").secret
    resp = call(env, admin, "/v1/tokens", json={"name": "carol", "role": "developer", "ttl": "30m"})
    assert resp.status_code == 201, resp.text
    doc = resp.json()
    assert doc["kind"] == "token" and doc["role"] == "developer" and doc["expiresAt"] - time.time() < 1801
    assert call(env, doc["token"]).json()["principal"] == "carol"

    resp = call(env, admin, "/v1/tokens", json={"name": "svc", "role": "viewer", "apiKey": True})
    key = resp.json()
    assert key["apiKey"].startswith(f"mk_{key['id']}_")

    listed = httpx.get(env["url"] + "/v1/tokens", headers={"Authorization": f"Bearer {admin}"}).json()["data"]
    assert {d["name"] for d in listed} >= {"carol", "svc", "root"}
    assert doc["token"] not in json.dumps(listed) and key["apiKey"] not in json.dumps(listed)
    assert all("hash" not in d for d in listed)

    revoked = httpx.delete(env["url"] + f"/v1/tokens/{doc['id']}", headers={"Authorization": f"Bearer {admin}"})
    assert revoked.status_code == 200 and revoked.json()["revokedAt"]
    assert_refused(wait_refused(env, doc["token"], "revoked"), 401, "revoked")

    bad = call(env, admin, "/v1/tokens", json={"name": "x", "role": "root"})
    assert_refused(bad, 422, "unknown role 'root'")
    bad = call(env, admin, "/v1/tokens", json={"name": "x", "role": "viewer", "rolle": 1})
    assert_refused(bad, 422, "body.rolle: extra field not permitted")
    missing = httpx.delete(env["url"] + "/v1/tokens/tok-000000000000", headers={"Authorization": f"Bearer {admin}"})
    assert_refused(missing, 404, "no token or API key")


def test_body_size_limit(env: dict[str, Any]) -> None:
    token = env["store"].create_token("big", "developer").secret
    limit = env["settings"].relay.max_body_bytes
    small = {"messages": [{"role": "user", "content": "x" * 100}]}
    assert call(env, token, json=small).status_code == 200
    big = json.dumps({"messages": [{"role": "user", "content": "x" * (limit + 10)}]}).encode()
    assert_refused(call(env, token, content=big), 413, f"exceeds the limit of {limit} bytes")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the guard counts what arrives
        for _ in range(limit // 512 + 2):
            yield b" " * 512

    resp = call(env, token, content=chunked(), headers={"Content-Type": "application/json"})
    assert_refused(resp, 413, "exceeds the limit")


def test_refusals_are_audited_without_credentials(env: dict[str, Any]) -> None:
    store, guard = env["store"], env["guard"]
    viewer = store.create_token("vera", "viewer")
    key = store.create_api_key("ops", "operator")
    wrong = f"mk_{key.id}_{'C' * 43}"
    call(env, None)
    call(env, wrong)
    call(env, viewer.secret, "/v1/deploy")
    asyncio.run(guard.flush_audit())

    audit = [e for e in events(env["engram"]) if e["type"] == "audit"]
    refused = [e["attrs"] for e in audit if e["attrs"]["action"] == "auth.refused"]
    assert {(a["status"], a["path"]) for a in refused} >= {(401, "/v1/chat/completions"), (403, "/v1/deploy")}
    denied = next(a for a in refused if a["status"] == 403)
    assert denied["subject"] == "vera" and denied["role"] == "viewer" and denied["verb"] == "deploy"
    created = {(e["attrs"]["action"], e["attrs"].get("name")) for e in audit}
    assert {("identity.created", "vera"), ("identity.created", "ops")} <= created
    dump = json.dumps(audit)
    for secret in (viewer.secret, key.secret, wrong, key.secret.split("_", 2)[-1], "C" * 43):
        assert secret not in dump


def test_auth_off_admits_anonymously(tmp_path: Path, make_settings: Any, make_app: Any, serve: Any) -> None:
    from mnemos.engram import Engram
    from mnemos.soul import EdgeGuard, LocalRateLimiter

    settings = make_settings(tmp_path, auth=False)
    guard = EdgeGuard(settings, Engram.from_settings(settings), limiter=LocalRateLimiter())
    with serve(make_app(guard)) as served:
        resp = httpx.post(served.url + "/v1/deploy", timeout=30)
        assert resp.json() == {"principal": "anonymous"}


def test_the_replica_that_revokes_refuses_at_once(tmp_path: Path, make_settings: Any) -> None:
    """Revocations are re-read every ``refresh_s``; the replica a revocation (or a console sign-out)
    went through re-reads them then, so it refuses the credential from its next request."""
    from mnemos.engram import Engram
    from mnemos.errors import AuthenticationError
    from mnemos.soul import EdgeGuard, IdentityStore, LocalRateLimiter

    settings = make_settings(tmp_path)
    engram = Engram.from_settings(settings)
    store = IdentityStore.from_settings(settings, engram)
    guard = EdgeGuard(settings, engram, limiter=LocalRateLimiter(), refresh_s=3600.0, max_stale_s=3600.0)
    created = store.create_token("bob", "developer")

    async def scenario() -> None:
        assert (await guard.verify_credential(created.secret)).subject == "bob"
        store.revoke(created.id)  # by another replica: this one sees it at its next re-read
        assert (await guard.verify_credential(created.secret)).subject == "bob"
        await guard.revoked(created.id)  # through this one
        with pytest.raises(AuthenticationError, match="revoked"):
            await guard.verify_credential(created.secret)

    asyncio.run(scenario())


def test_refusals_and_rate_limited_requests_are_counted(tmp_path: Path, make_settings: Any, make_app: Any,
                                                        serve: Any) -> None:  # fmt: skip
    """`mnemos_relay_auth_failures_total` and `mnemos_ratelimited_total` were declared, documented and
    charted, and nothing counted them: /metrics showed their HELP lines only after 401s and 429s."""
    from mnemos.engram import Engram
    from mnemos.soul import EdgeGuard, IdentityStore, LocalRateLimiter
    from mnemos.trace import metrics

    settings = make_settings(tmp_path, rate_limit={"requests_per_second": 0.1, "burst": 1})
    engram = Engram.from_settings(settings)
    viewer = IdentityStore.from_settings(settings, engram).create_token("vera", "viewer").secret
    guard = EdgeGuard(settings, engram, limiter=LocalRateLimiter())
    before = {reason: metrics.RELAY_AUTH_FAILURES.value(reason=reason) for reason in ("unauthenticated", "forbidden")}
    limited = metrics.RATELIMITED.value(principal_kind="token")
    with serve(make_app(guard)) as served:
        env = {"url": served.url}
        assert call(env, None).status_code == 401
        assert call(env, "not-a-credential").status_code == 401
        assert call(env, viewer, "/v1/deploy").status_code == 403
        statuses = [call(env, viewer, "/v1/lineage").status_code for _ in range(3)]
    assert statuses[0] == 200 and statuses[1:] == [429, 429], statuses
    assert metrics.RELAY_AUTH_FAILURES.value(reason="unauthenticated") == before["unauthenticated"] + 2
    assert metrics.RELAY_AUTH_FAILURES.value(reason="forbidden") == before["forbidden"] + 1
    assert metrics.RATELIMITED.value(principal_kind="token") == limited + 2
