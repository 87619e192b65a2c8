"""JWTs: issue with the active key of the ring, verify against public keys.

Claims: ``iss`` (``soul.mnemos``), ``sub``, ``role``, ``scp`` (scopes, optional), ``iat``, ``exp``,
``jti``, and when set: ``team`` (the identity's team: team limits, budgets and usage apply to the
token's caller as to an API key's), ``lim`` (the credential's own ``{rpm, tpm, budget}``), ``lk``
(whose per-credential counters ``lim`` spends: a console session's token counts against the API key
it was made from), ``mdl`` (the credential's model list: the only models it may call) and ``par``
(the credentials the token was made from, nearest first: a console session's token names the API key
or token it signed in with, and is refused as soon as any of them is revoked; it never outlives
them, since it is issued to expire no later), and ``aud``: ``console`` on a console session's token,
which authenticates the console only (``CONSOLE_AUDIENCE``). The header carries ``kid`` and ``alg: EdDSA``.
Every refusal is an ``AuthenticationError`` whose message says why and never contains the
token.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from mnemos.errors import AuthenticationError, ValidationError
from mnemos.soul.identity import MAX_MODELS, Principal
from mnemos.soul.keys import ALGORITHM, LEEWAY_SECONDS, KeyRing
from mnemos.soul.rbac import check_role, check_scopes

__all__ = ["CONSOLE_AUDIENCE", "IssuedToken", "LEEWAY_SECONDS", "UnknownKeyError", "issue_token", "new_jti",
           "verify_token"]

CONSOLE_AUDIENCE = "console"
"""The ``aud`` of a console session's token: the gateway's API refuses it as a bearer credential."""
_AUDIENCES = frozenset({CONSOLE_AUDIENCE})

MAX_PARENTS = 8
"""The longest chain of ``par`` a token carries (a session of a session of …)."""


class UnknownKeyError(AuthenticationError):
    """The token names a ``kid`` the verifier does not hold (refresh the keys, then refuse)."""


@dataclass(frozen=True)
class IssuedToken:
    """A newly issued JWT (shown once) and its public claims."""

    token: str
    jti: str
    kid: str
    subject: str
    role: str
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float


def new_jti() -> str:
    """A token id: ``tok-`` and 12 hex digits."""
    return f"tok-{secrets.token_hex(6)}"


def issue_token(
    keyring: KeyRing,
    *,
    subject: str,
    role: str,
    issuer: str,
    ttl: float | None = None,
    scopes: Iterable[str] = (),
    now: float | None = None,
    team: str = "",
    limits: Mapping[str, Any] | None = None,
    limits_key: str = "",
    parents: Iterable[str] = (),
    audience: str = "",
    models: Iterable[str] = (),
) -> IssuedToken:
    """Sign a JWT for ``subject`` with the ring's active key (rotating first when due).

    Args:
        ttl: lifetime in seconds (default: the ring's token TTL, 1 h).
        now: issue time (default: the ring's clock).
        team: the ``team`` claim (empty: none).
        limits: the ``lim`` claim, a validated ``UsageLimits`` document (None: none).
        limits_key: the ``lk`` claim (empty: the token's own ``jti`` counts).
        parents: the ``par`` claim: the credentials this token is made from, nearest first (it is
            refused once any of them is revoked); at most ``MAX_PARENTS``.
        audience: the ``aud`` claim (``CONSOLE_AUDIENCE`` for a console session; empty: none).
        models: the ``mdl`` claim, a checked model list (``identity.check_models``; empty: none).
    """
    check_role(role)
    scopes = check_scopes(scopes)
    parents = tuple(str(p) for p in parents)
    if len(parents) > MAX_PARENTS or any(not p or len(p) > 64 for p in parents):
        raise ValidationError(f"parents: at most {MAX_PARENTS} credential ids of 1-64 characters", param="parents")
    record = keyring.active()
    now = keyring.clock() if now is None else now
    ttl = keyring.token_ttl if ttl is None else float(ttl)
    jti = new_jti()
    exp = now + ttl
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "role": role,
        "iat": int(now),
        "exp": int(exp),
        "jti": jti,
    }
    if scopes:
        claims["scp"] = list(scopes)
    if team:
        claims["team"] = team
    if limits:
        claims["lim"] = dict(limits)
    if limits_key:
        claims["lk"] = limits_key
    if parents:
        claims["par"] = list(parents)
    if models:
        claims["mdl"] = list(models)
    if audience:
        if audience not in _AUDIENCES:
            raise ValidationError(f"audience: {audience!r} is not one of {sorted(_AUDIENCES)}", param="audience")
        claims["aud"] = audience
    token = jwt.encode(claims, keyring.private_key(record), algorithm=ALGORITHM, headers={"kid": record.kid})
    keyring.note_expiry(record, float(int(exp)))
    return IssuedToken(token, jti, record.kid, subject, role, scopes, float(int(now)), float(int(exp)))


_REQUIRED = ["iss", "sub", "iat", "exp", "jti"]


def verify_token(
    token: str,
    keys: Mapping[str, Any],
    *,
    issuer: str,
    now: float | None = None,
    is_revoked: Callable[[str], bool] = lambda jti: False,
) -> Principal:
    """Verify a JWT and return its principal.

    Raises:
        UnknownKeyError: the ``kid`` is not in ``keys`` (the caller may refresh and retry).
        AuthenticationError: malformed, forged, expired, wrong issuer, unknown role or revoked.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthenticationError("malformed token: not a JWT", param="authorization") from None
    if header.get("alg") != ALGORITHM:
        raise AuthenticationError(
            f"token algorithm {str(header.get('alg'))[:16]!r} is not accepted (only {ALGORITHM})", param="authorization"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in keys:
        raise UnknownKeyError("token is signed by an unknown key", param="authorization")
    try:
        claims = jwt.decode(
            token,
            keys[kid],
            algorithms=[ALGORITHM],
            issuer=issuer,
            options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False, "verify_aud": False},
        )
    except jwt.InvalidSignatureError:
        raise AuthenticationError("token signature is invalid", param="authorization") from None
    except jwt.InvalidIssuerError:
        raise AuthenticationError(f"token issuer is not {issuer!r}", param="authorization") from None
    except jwt.ImmatureSignatureError:
        raise AuthenticationError("token is not valid yet: its 'nbf' is in the future",
                                  param="authorization") from None  # fmt: skip
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationError(f"token lacks the {exc.claim!r} claim", param="authorization") from None
    except jwt.PyJWTError:
        raise AuthenticationError("malformed token", param="authorization") from None
    now = time.time() if now is None else now
    try:
        exp, iat = float(claims["exp"]), float(claims["iat"])
    except (TypeError, ValueError):
        raise AuthenticationError("token times are not numbers", param="authorization") from None
    if now >= exp + LEEWAY_SECONDS:
        raise AuthenticationError("token has expired: get a new one (`mnemos token create`, or ask an admin), "
                                  "or sign in again", param="authorization")  # fmt: skip
    if iat > now + LEEWAY_SECONDS:
        raise AuthenticationError("token is issued in the future", param="authorization")
    role = claims.get("role")
    if not isinstance(role, str):
        raise AuthenticationError("token lacks the 'role' claim", param="authorization")
    try:
        check_role(role)
        scopes = check_scopes(claims.get("scp") or ())
    except Exception:  # noqa: BLE001 - a validly signed token with a role this version does not know
        raise AuthenticationError("token names an unknown role or scope", param="authorization") from None
    jti = str(claims["jti"])
    if is_revoked(jti):
        raise AuthenticationError(f"token {jti} has been revoked", param="authorization")
    parents = _parents(claims.get("par"))
    for parent in parents:  # a console session dies with the API key (or token) it signed in with
        if is_revoked(parent):
            raise AuthenticationError(
                f"token {jti} was made from credential {parent}, which has been revoked", param="authorization"
            )
    audience = claims.get("aud", "")
    # (a list, a number, a name this version does not issue: one refusal, never a TypeError)
    if audience and (not isinstance(audience, str) or audience not in _AUDIENCES):
        raise AuthenticationError("token names an unknown audience", param="authorization")
    team, limits_key = claims.get("team", ""), claims.get("lk", "")
    if not isinstance(team, str) or len(team) > 128 or not isinstance(limits_key, str) or len(limits_key) > 64:
        raise AuthenticationError("token names an invalid team or limits key", param="authorization")
    return Principal(
        subject=str(claims["sub"]),
        role=role,
        kind="token",
        scopes=scopes,
        credential_id=jti,
        expires_at=exp,
        team=team,
        limits=_usage_limits(jti, claims.get("lim")),
        limits_key=limits_key,
        parents=parents,
        audience=audience,
        models=_models(claims.get("mdl")),
    )


def _models(claim: Any) -> tuple[str, ...]:
    """The ``mdl`` claim as a tuple of model names (absent: none); a malformed one refuses the token."""
    if claim is None:
        return ()
    if (not isinstance(claim, list) or not 0 < len(claim) <= MAX_MODELS
            or not all(isinstance(m, str) and 0 < len(m) <= 256 for m in claim)):  # fmt: skip
        raise AuthenticationError("token carries an invalid model list", param="authorization")
    return tuple(claim)


def _parents(claim: Any) -> tuple[str, ...]:
    """The ``par`` claim as a tuple of ids (absent: none); a malformed one refuses the token."""
    if claim is None:
        return ()
    if (not isinstance(claim, list) or len(claim) > MAX_PARENTS
            or not all(isinstance(p, str) and 0 < len(p) <= 64 for p in claim)):  # fmt: skip
        raise AuthenticationError("token names invalid parent credentials", param="authorization")
    return tuple(claim)


_PARSED_LIMITS: dict[str, Any] = {}


def _usage_limits(jti: str, doc: Any) -> Any:
    """The ``lim`` claim as ``UsageLimits``, parsed once per token (not per request), or None."""
    if not doc:
        return None
    parsed = _PARSED_LIMITS.get(jti)
    if parsed is not None:
        return parsed
    from pydantic import ValidationError as PydanticValidationError

    from mnemos.genome.metering import UsageLimits
    from mnemos.soul.limits import floor_budget_window

    try:
        parsed = floor_budget_window(UsageLimits.model_validate(doc))  # one minted under 1 s: read as 1 s
    except PydanticValidationError:
        raise AuthenticationError("token carries invalid limits", param="authorization") from None
    if len(_PARSED_LIMITS) > 10_000:
        _PARSED_LIMITS.clear()
    _PARSED_LIMITS[jti] = parsed
    return parsed
