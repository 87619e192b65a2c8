"""Teams and limits on minted credentials: JWTs carry the team (and limits) of their identity, and
``POST /v1/tokens`` sets ``limits`` only within the caller's own, seen from an attacker's side."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests_support import until

from mnemos.soul.tokens import verify_token


def _principal(store: Any, token: str) -> Any:
    return verify_token(token, store.keyring.public_keys(), issuer=store.issuer)


def test_jwt_carries_team_and_limits_into_the_principal(tmp_path: Path, make_settings: Any) -> None:
    from mnemos.engram import Engram
    from mnemos.soul import IdentityStore
    from mnemos.soul.limits import Governor

    settings = make_settings(tmp_path)
    store = IdentityStore.from_settings(settings, Engram.from_settings(settings))
    plain = _principal(store, store.create_token("ann", "developer").secret)
    assert plain.team == "" and plain.limits is None

    created = store.create_token("bob", "developer", team="vision", limits={"rpm": 30, "budget": {"tokens": 500}})
    bob = _principal(store, created.secret)
    assert (bob.team, bob.limits.rpm, bob.limits.budget.tokens) == ("vision", 30, 500)
    limits = asyncio.run(Governor().limits_for(bob, "m"))  # the same per-credential limit an API key gets
    assert [(limit.name, limit.scope) for limit in limits] == [("key", f"key:{created.id}")]

    session = _principal(store, store.create_token("bob", "developer", limits={"rpm": 30}, limits_key="k1").secret)
    assert [limit.scope for limit in asyncio.run(Governor().limits_for(session, "m"))] == ["key:k1"]

    with pytest.raises(Exception) as bad:
        store.create_token("eve", "developer", team="no spaces")
    assert getattr(bad.value, "param", None) == "team"
    with pytest.raises(Exception) as bad:
        store.create_token("eve", "developer", limits={"rpm": 0})
    assert getattr(bad.value, "param", None) == "limits.rpm"


def _mint(env: dict[str, Any], caller: str, **body: Any) -> httpx.Response:
    doc = {"name": "new", "role": "developer", "apiKey": True, **body}
    return httpx.post(env["url"] + "/v1/tokens", json=doc, headers={"Authorization": f"Bearer {caller}"}, timeout=30)


def _error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    return resp.json()["error"]  # type: ignore[no-any-return]


def test_token_route_sets_limits_and_team(soul_env: dict[str, Any]) -> None:
    store = soul_env["store"]
    admin = store.create_api_key("root", "admin").secret
    bad = (({"rpm": 0}, "limits.rpm"), ({"tpm": "many"}, "limits.tpm"), ({"rps": 5}, "limits.rps"),
           ({"budget": {"amount": -1}}, "limits.budget.amount"))  # fmt: skip
    for limits, param in bad:
        error = _error(_mint(soul_env, admin, limits=limits), 422)
        assert error["param"] == f"body.{param}" and param in error["message"], error
    assert _error(_mint(soul_env, admin, team="a b"), 422)["param"] == "body.team"

    resp = _mint(soul_env, admin, team="vision", limits={"rpm": 60, "tpm": 6000, "budget": {"amount": 5}})
    assert resp.status_code == 201, resp.text
    record = store.api_key(resp.json()["id"])
    assert record.team == "vision" and record.limits["rpm"] == 60 and record.limits["budget"]["amount"] == 5

    jwt = _mint(soul_env, admin, apiKey=False, team="vision", limits={"rpm": 60})
    assert jwt.status_code == 201, jwt.text
    principal = _principal(store, jwt.json()["token"])
    assert principal.team == "vision" and principal.limits.rpm == 60


def test_minting_cannot_escape_the_callers_role_team_or_limits(soul_env: dict[str, Any]) -> None:
    store = soul_env["store"]
    developer = store.create_api_key("dev", "developer", team="vision").secret
    error = _error(_mint(soul_env, developer, name="dev2", role="admin", limits={"rpm": 10**9}), 403)
    assert "manage-identities" in error["message"]  # no minting at all below admin, limits or not

    # An admin credential handed out with a team and limits mints only inside both.
    boxed = store.create_api_key("boxed", "admin", team="vision",
                                 limits={"rpm": 60, "budget": {"amount": 5, "window": 86400}}).secret  # fmt: skip
    assert _error(_mint(soul_env, boxed, team="other"), 403)["param"] == "team"
    assert _error(_mint(soul_env, boxed, limits={"rpm": 61}), 403)["param"] == "limits.rpm"
    assert _error(_mint(soul_env, boxed, limits={"budget": {"amount": 6}}), 403)["param"] == "limits.budget.amount"
    shorter = {"budget": {"amount": 5, "window": 3600}}  # the same amount every hour is more than every day
    assert _error(_mint(soul_env, boxed, limits=shorter), 403)["param"] == "limits.budget.window"

    inherited = _mint(soul_env, boxed)  # nothing given: the caller's team and limits
    assert inherited.status_code == 201, inherited.text
    record = store.api_key(inherited.json()["id"])
    assert record.team == "vision" and record.limits == {"rpm": 60, "budget": {"amount": 5.0, "window": "1d"}}

    narrower = _mint(soul_env, boxed, limits={"rpm": 6, "tpm": 100})
    assert narrower.status_code == 201, narrower.text
    assert store.api_key(narrower.json()["id"]).limits["rpm"] == 6


def test_limits_left_out_are_the_callers_and_null_is_not_unlimited() -> None:
    from mnemos.errors import PermissionDeniedError
    from mnemos.genome.metering import UsageLimits
    from mnemos.soul.http import TokenCreate, check_mint_scope
    from mnemos.soul.identity import Principal

    own = UsageLimits.model_validate({"rpm": 60, "budget": {"amount": 5, "window": "1d"}})
    boxed = Principal("boxed", "admin", "apikey", team="vision", limits=own)
    mint = TokenCreate(name="n", role="developer", limits={"budget": {"tokens": 10}})
    assert check_mint_scope(boxed, mint) == ("vision", {"rpm": 60, "budget": {"amount": 5.0, "tokens": 10,
                                                                               "window": "1d"}})  # fmt: skip
    for limits, param in (({"rpm": None}, "limits.rpm"), ({"budget": None}, "limits.budget.amount")):
        with pytest.raises(PermissionDeniedError) as refused:
            check_mint_scope(boxed, TokenCreate(name="n", role="developer", limits=limits))
        assert refused.value.param == param
    free = Principal("root", "admin", "apikey")  # no team, no limits: mints what it is asked
    assert check_mint_scope(free, TokenCreate(name="n", role="developer", team="ml")) == ("ml", None)


def test_a_console_session_keeps_the_keys_team_and_spends_its_limits(tmp_path: Path, make_settings: Any) -> None:
    """Signing in with a limited API key must not yield a session token that escapes the key's limits."""
    from mnemos.engram import Engram
    from mnemos.relay._edge import EdgeSeam
    from mnemos.relay.console.session import Sessions
    from mnemos.soul import IdentityStore
    from mnemos.soul.ratelimit import LocalRateLimiter

    settings = make_settings(tmp_path)
    engram = Engram.from_settings(settings)
    key = IdentityStore.from_settings(settings, engram).create_api_key("ann", "developer", team="vision",
                                                                       limits={"rpm": 30})  # fmt: skip
    edge = EdgeSeam(settings, engram)
    edge.guard._limiter = LocalRateLimiter()  # no Ray in this test
    _, session, _ = asyncio.run(Sessions(edge).sign_in(key.secret))
    principal = _principal(edge.guard.store, session)
    assert (principal.team, principal.limits.rpm, principal.limits_key) == ("vision", 30, key.id)


def test_a_model_list_travels_with_jwts_api_keys_sessions_and_pipeline_runs(tmp_path: Path,
                                                                             make_settings: Any) -> None:
    """A credential's model list (``models``) is in its JWT claim or its stored key, in the console
    session made from it, and in the identity a pipeline run is metered as; the Governor holds each."""
    from mnemos.engram import Engram
    from mnemos.errors import ModelAccessError
    from mnemos.relay._edge import EdgeSeam
    from mnemos.relay.console.session import Sessions
    from mnemos.soul import IdentityStore
    from mnemos.soul.apikeys import verify_api_key
    from mnemos.soul.limits import Governor, MeteredIdentity
    from mnemos.soul.ratelimit import LocalRateLimiter

    settings = make_settings(tmp_path)
    engram = Engram.from_settings(settings)
    store = IdentityStore.from_settings(settings, engram)
    token = _principal(store, store.create_token("ann", "developer", models=["tiny-chat", "tiny-chat"]).secret)
    assert token.models == ("tiny-chat",)  # each once
    assert _principal(store, store.create_token("bob", "developer").secret).models == ()
    key = store.create_api_key("cat", "developer", models=["minilm"])
    key_id, secret = key.secret[3:].split("_", 1)
    assert verify_api_key(store.api_key(key_id), key_id, secret).models == ("minilm",)

    edge = EdgeSeam(settings, engram)
    edge.guard._limiter = LocalRateLimiter()  # no Ray in this test
    _, session, _ = asyncio.run(Sessions(edge).sign_in(key.secret))
    assert _principal(edge.guard.store, session).models == ("minilm",)  # signing in widens nothing

    identity = MeteredIdentity.of(token)
    assert MeteredIdentity.load(identity.dump()).models == ("tiny-chat",)
    governor = Governor(None)  # no Policies: only the list decides
    assert asyncio.run(governor.may_call(token, "tiny-chat"))
    with pytest.raises(ModelAccessError, match="its model list does not name it") as refused:
        asyncio.run(governor.admit(identity, "minilm", reserve_tokens=1))
    assert refused.value.param == "model" and refused.value.status == 403
    assert asyncio.run(governor.may_call(MeteredIdentity.of("anyone"), "minilm"))


def test_a_model_list_mints_only_within_the_callers() -> None:
    from mnemos.errors import PermissionDeniedError, ValidationError
    from mnemos.soul.http import TokenCreate, check_mint_models
    from mnemos.soul.identity import Principal

    listed = Principal("boxed", "admin", "apikey", models=("tiny-chat", "minilm"))
    assert check_mint_models(listed, TokenCreate(name="n", role="developer")) == ("tiny-chat", "minilm")
    assert check_mint_models(listed, TokenCreate(name="n", role="developer", models=["minilm"])) == ("minilm",)
    for models, message in ((["minilm", "gpt-4o"], "names 'gpt-4o', which the caller's does not"),
                            ([], "is empty (any model)")):  # fmt: skip
        with pytest.raises(PermissionDeniedError, match=re.escape(message)) as refused:
            check_mint_models(listed, TokenCreate(name="n", role="developer", models=models))
        assert refused.value.param == "models"
    free = Principal("root", "admin", "apikey")  # no list: mints any list, or none
    assert check_mint_models(free, TokenCreate(name="n", role="developer", models=["gpt-4o"])) == ("gpt-4o",)
    assert check_mint_models(free, TokenCreate(name="n", role="developer")) == ()
    for bad, param in ((["ok", ""], "models[1]"), (["a\nb"], "models[0]"), ([f"m{i}" for i in range(300)], "models")):
        with pytest.raises(ValidationError) as refused:
            check_mint_models(free, TokenCreate.model_construct(name="n", role="developer", models=bad))
        assert refused.value.param == param


def test_a_jwt_minted_by_an_expiring_api_key_is_refused_no_later_than_the_key() -> None:
    """Verifiers accept a JWT up to LEEWAY_SECONDS past its exp but an API key not past its expiry:
    a JWT an API key mints must end that much before the key, or it would outlive it."""
    from mnemos.errors import PermissionDeniedError
    from mnemos.soul.http import TokenCreate, check_minting
    from mnemos.soul.identity import Principal
    from mnemos.soul.tokens import LEEWAY_SECONDS

    now = 1_000_000.0
    key = Principal("ops", "admin", "apikey", expires_at=now + 100)

    def mint(caller: Principal, ttl: float, api_key: bool = False) -> float | None:
        body = TokenCreate(name="n", role="viewer", ttl=ttl, apiKey=api_key)
        return check_minting(caller, body, max_token_ttl=86400.0, default_token_ttl=3600.0, now=now)

    assert mint(key, 100 - LEEWAY_SECONDS) == 100 - LEEWAY_SECONDS
    with pytest.raises(PermissionDeniedError, match=r"less the 30 s a token is accepted past its expiry \(70 s\)") as \
            refused:  # fmt: skip
        mint(key, 90)  # accepted until now + 120, the key refused from now + 100
    assert refused.value.param == "ttl"
    assert mint(key, 100, api_key=True) == 100  # an API key ends when it says
    token = Principal("ops", "admin", "token", expires_at=now + 100)  # itself accepted until now + 130
    assert mint(token, 100) == 100
    with pytest.raises(PermissionDeniedError, match=r"expires in 100 s; give a ttl at most that long \(100 s\)"):
        mint(token, 101)


def test_a_jwt_dies_with_the_credential_that_minted_it(soul_env: dict[str, Any]) -> None:
    """Revoking a leaked key left alive every JWT it had minted (for up to a day): they carried no
    ``par``. They do now, as console sessions do; an API key it minted stands on its own (a team's
    admin key rotated must not take its developers' keys with it)."""
    store = soul_env["store"]
    leaked = store.create_api_key("leaky", "admin")
    minted = _mint(soul_env, leaked.secret, name="leaky-ci", role="admin", apiKey=False, ttl=3600)
    assert minted.status_code == 201, minted.text
    grandchild = _mint(soul_env, minted.json()["token"], name="leaky-ci", role="viewer", apiKey=False, ttl=600)
    assert grandchild.status_code == 201, grandchild.text
    key = _mint(soul_env, leaked.secret, name="leaky-dev")
    tokens = (minted.json()["token"], grandchild.json()["token"])

    def status(credential: str) -> int:
        return httpx.get(soul_env["url"] + "/v1/lineage", headers={"Authorization": f"Bearer {credential}"},
                         timeout=30).status_code  # fmt: skip

    assert [status(t) for t in tokens] == [200, 200]
    store.revoke(leaked.id)
    # refused once the guard re-reads revocations
    until(lambda: [status(t) for t in tokens], "the minted tokens refused", ready=lambda s: s == [401, 401],
          timeout=30, interval=0.2)  # fmt: skip
    assert status(key.json()["apiKey"]) == 200
    listed = {d["id"]: d["state"] for d in store.list(include_inactive=True)}
    assert listed[minted.json()["id"]] == listed[grandchild.json()["id"]] == "revoked"
