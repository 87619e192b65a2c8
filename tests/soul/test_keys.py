"""Signing keys: rotation keeps the previous key's tokens valid until they expire, then drops the
key; the JWKS publishes exactly the valid public keys; RBAC's table."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from mnemos.engram import Engram
from mnemos.errors import AuthenticationError, PermissionDeniedError, ValidationError
from mnemos.soul import KeyRing, Principal, authorize, issue_token, verify_token
from mnemos.soul.rbac import ROLES, VERBS, allowed
from mnemos.soul.tokens import LEEWAY_SECONDS, UnknownKeyError

ISSUER = "soul.mnemos"


class Clock:
    """Epoch seconds that a test moves forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_rotation_keeps_previous_tokens_until_they_expire(engram: Engram) -> None:
    clock = Clock()
    ring = KeyRing(engram, rotate_hours=24, token_ttl=3600, clock=clock)
    old = issue_token(ring, subject="alice", role="developer", issuer=ISSUER)
    long_lived = issue_token(ring, subject="svc", role="viewer", issuer=ISSUER, ttl=3 * 3600)

    clock.now += 25 * 3600 - 7200  # 23 h: not due yet
    assert ring.active().kid == old.kid
    clock.now = old.issued_at + 1800
    new_key = ring.rotate(force=True)
    assert new_key.kid != old.kid
    new = issue_token(ring, subject="bob", role="developer", issuer=ISSUER)
    assert new.kid == new_key.kid

    keys = ring.public_keys()
    assert set(keys) == {old.kid, new.kid}
    assert verify_token(old.token, keys, issuer=ISSUER, now=clock()).subject == "alice"
    assert verify_token(new.token, keys, issuer=ISSUER, now=clock()).subject == "bob"
    assert {k["kid"] for k in ring.jwks()["keys"]} == {old.kid, new.kid}

    clock.now = old.expires_at + 60  # the default-TTL token expired, the 3 h one has not
    assert ring.prune() == []
    with pytest.raises(AuthenticationError, match="expired: get a new one") as expired:  # and how
        verify_token(old.token, ring.public_keys(), issuer=ISSUER, now=clock())
    assert "mnemos token create" in expired.value.message and old.token not in expired.value.message
    assert verify_token(long_lived.token, ring.public_keys(), issuer=ISSUER, now=clock()).subject == "svc"

    clock.now = long_lived.expires_at + LEEWAY_SECONDS - 1  # still accepted (clock skew): its key stays
    assert ring.prune() == []
    assert verify_token(long_lived.token, ring.public_keys(), issuer=ISSUER, now=clock()).subject == "svc"
    clock.now = long_lived.expires_at + LEEWAY_SECONDS + 1  # every token of the old key expired: the key goes
    assert ring.prune() == [old.kid]
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new.kid]
    with pytest.raises(UnknownKeyError):
        verify_token(old.token, ring.public_keys(), issuer=ISSUER, now=clock())

    clock.now = new_key.created_at + 24 * 3600 + 1  # the active key is due: signing rotates
    assert ring.active().kid not in (old.kid, new.kid)


def test_concurrent_signers_never_shorten_a_keys_life(engram: Engram, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two gateway replicas mint long-lived tokens with one key at once, both reading the key before
    either writes, the shorter expiry written last: the later expiry is still kept (a rewritten
    record lost it, and the key was pruned while a token it signed had hours to live)."""
    clock = Clock()
    replicas = {name: KeyRing(engram, token_ttl=3600, clock=clock) for name in ("a", "b")}
    record = replicas["a"].active()
    key = f"soul/keys/{record.kid}.json"
    both_read, a_wrote = threading.Barrier(2, timeout=5), threading.Event()
    read_json, write_json = engram.read_json, engram.write_json

    def interleaved_read(k: str) -> Any:
        doc = read_json(k)
        if k == key and threading.current_thread().name in replicas:
            with contextlib.suppress(threading.BrokenBarrierError):
                both_read.wait()
        return doc

    def interleaved_write(k: str, obj: Any) -> None:
        if k == key and threading.current_thread().name == "b":
            a_wrote.wait(5)
        write_json(k, obj)
        if k == key and threading.current_thread().name == "a":
            a_wrote.set()

    monkeypatch.setattr(engram, "read_json", interleaved_read)
    monkeypatch.setattr(engram, "write_json", interleaved_write)
    minted: dict[str, Any] = {}

    def mint(name: str, hours: int) -> None:
        minted[name] = issue_token(replicas[name], subject=name, role="viewer", issuer=ISSUER, ttl=hours * 3600)

    threads = [threading.Thread(target=mint, args=(n, h), name=n) for n, h in (("a", 9), ("b", 5))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.undo()
    assert {t.kid for t in minted.values()} == {record.kid}

    clock.now += 60
    replicas["a"].rotate(force=True)
    clock.now += 6 * 3600  # b's token and the TTL are over, a's 9 h token is not
    assert replicas["b"].prune() == []
    assert verify_token(minted["a"].token, replicas["b"].public_keys(), issuer=ISSUER, now=clock()).subject == "a"
    clock.now = minted["a"].expires_at + LEEWAY_SECONDS + 1
    assert replicas["b"].prune() == [record.kid]
    assert engram.list("soul/keys/expiry") == []  # its markers go with it


def test_private_keys_are_encrypted_at_rest(local_engram: Engram) -> None:
    ring = KeyRing(local_engram)
    record = ring.active()
    raw = (Path(local_engram.path(f"soul/keys/{record.kid}.json"))).read_bytes()
    from cryptography.hazmat.primitives import serialization

    der = ring.private_key(record).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    import base64

    assert base64.b64encode(der) not in raw and der[-32:] not in raw
    assert b"PRIVATE KEY" not in raw


@pytest.fixture()
def env(soul_env: dict[str, Any]) -> dict[str, Any]:
    return soul_env


def test_jwks_over_http_and_rotation_at_the_edge(env: dict[str, Any]) -> None:
    store = env["store"]
    before = store.create_token("alice", "developer").secret
    headers = {"Authorization": f"Bearer {before}"}
    assert httpx.get(env["url"] + "/v1/lineage", headers=headers).status_code == 200

    rotated = store.keyring.rotate(force=True)
    after = store.create_token("bob", "developer").secret
    assert jwt.get_unverified_header(after)["kid"] == rotated.kid
    # The guard learns the new kid on first sight; the old key's token still works.
    assert httpx.get(env["url"] + "/v1/lineage", headers={"Authorization": f"Bearer {after}"}).status_code == 200
    assert httpx.get(env["url"] + "/v1/lineage", headers=headers).status_code == 200

    resp = httpx.get(env["url"] + "/.well-known/jwks.json")  # public: no credential
    assert resp.status_code == 200
    keys = resp.json()["keys"]
    assert {k["kid"] for k in keys} == {jwt.get_unverified_header(before)["kid"], rotated.kid}
    assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and k["alg"] == "EdDSA" and "d" not in k for k in keys)
    # Any JOSE library can verify with the published set.
    jwk = jwt.PyJWKSet.from_dict(resp.json())[rotated.kid]
    claims = jwt.decode(after, jwk, algorithms=["EdDSA"], issuer="soul.mnemos")
    assert claims["sub"] == "bob" and claims["role"] == "developer" and claims["jti"].startswith("tok-")
    assert claims["exp"] - claims["iat"] == 3600


def test_rbac_matrix() -> None:
    expected = {
        "admin": set(VERBS),
        "operator": set(VERBS) - {"manage-identities"},
        "developer": {"infer", "submit", "read-artifacts", "read-lineage"},
        "viewer": {"read-artifacts", "read-lineage"},
    }
    for role, verbs in expected.items():
        assert {v for v in VERBS if allowed(role, v)} == verbs
        assert ROLES[role] == verbs
    viewer = Principal("v", "viewer", "token")
    with pytest.raises(PermissionDeniedError, match="role 'viewer' may not 'deploy'"):
        authorize(viewer, "deploy")
    developer = Principal("d", "developer", "apikey")
    authorize(developer, "infer")
    with pytest.raises(PermissionDeniedError, match="role 'developer' may not 'manage-identities'"):
        authorize(developer, "manage-identities")
    with pytest.raises(PermissionDeniedError, match="scoped to submit"):
        authorize(Principal("d", "developer", "apikey", scopes=("submit",)), "infer")
    with pytest.raises(ValidationError, match="unknown verb 'fly'; valid verbs: apply"):
        authorize(developer, "fly")
