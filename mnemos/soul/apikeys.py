"""API keys ``mk_<id>_<secret>``: stored hashed, scoped, revocable, optionally expiring.

Layout: ``soul/apikeys/<id>.json`` = ``{id, name, role, scopes, hash, created_at, expires_at,
revoked_at, created_by, team, limits, models}`` (``limits``: ``{rpm, tpm, budget: {amount, tokens, window}}``,
see ``mnemos.genome.metering.UsageLimits``; ``models``: the key's model list, the only models it may
call, empty for any). The secret is 32 random bytes, so a salted SHA-256 is the right hash:
it cannot be brute-forced, and verifying it costs microseconds on the request path (a slow
password hash such as scrypt would cost tens of milliseconds per request for no gain).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from mnemos.errors import AuthenticationError
from mnemos.soul.identity import Principal

__all__ = [
    "APIKEYS_PREFIX",
    "ApiKeyRecord",
    "KEY_PREFIX",
    "hash_secret",
    "is_api_key",
    "new_api_key",
    "parse_api_key",
    "verify_api_key",
]

APIKEYS_PREFIX = "soul/apikeys"
KEY_PREFIX = "mk_"


@dataclass(frozen=True)
class ApiKeyRecord:
    """What is stored for an API key (never the secret)."""

    id: str
    name: str
    role: str
    hash: str
    created_at: float
    scopes: tuple[str, ...] = field(default=())
    expires_at: float | None = None
    revoked_at: float | None = None
    created_by: str = ""
    team: str = ""
    limits: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    models: tuple[str, ...] = field(default=())

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ApiKeyRecord:
        return cls(
            id=str(doc["id"]),
            name=str(doc["name"]),
            role=str(doc["role"]),
            hash=str(doc["hash"]),
            created_at=float(doc["created_at"]),
            scopes=tuple(doc.get("scopes") or ()),
            expires_at=None if doc.get("expires_at") is None else float(doc["expires_at"]),
            revoked_at=None if doc.get("revoked_at") is None else float(doc["revoked_at"]),
            created_by=str(doc.get("created_by", "")),
            team=str(doc.get("team") or ""),
            limits=doc.get("limits") or None,
            models=tuple(str(m) for m in doc.get("models") or ()),
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": "apikey",
            "name": self.name,
            "role": self.role,
            "hash": self.hash,
            "created_at": self.created_at,
            "scopes": list(self.scopes),
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "created_by": self.created_by,
            "team": self.team,
            "limits": self.limits,
            "models": list(self.models),
        }


def hash_secret(key_id: str, secret: str) -> str:
    """``sha256:<hex>`` of the secret, salted with the key id."""
    return "sha256:" + hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


def new_api_key() -> tuple[str, str, str]:
    """A fresh ``(id, secret, plaintext key)``; the plaintext is shown once and never stored."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{KEY_PREFIX}{key_id}_{secret}"


def is_api_key(credential: str) -> bool:
    """Whether a bearer credential looks like an API key (rather than a JWT)."""
    return credential.startswith(KEY_PREFIX)


def parse_api_key(credential: str) -> tuple[str, str]:
    """``(id, secret)`` of ``mk_<id>_<secret>``; a malformed key is an ``AuthenticationError``."""
    parts = credential.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX[:-1] or not parts[1] or not parts[2]:
        raise AuthenticationError("malformed API key: expected mk_<id>_<secret>", param="authorization")
    key_id = parts[1]
    if len(key_id) > 64 or not all(c in "0123456789abcdef" for c in key_id):
        raise AuthenticationError("malformed API key: bad id", param="authorization")
    return key_id, parts[2]


def verify_api_key(
    record: ApiKeyRecord | None, key_id: str, secret: str, *, now: float | None = None, revoked: bool = False
) -> Principal:
    """Check a presented key against its stored record.

    Raises:
        AuthenticationError: unknown id, wrong secret, revoked or expired key.
    """
    if record is None:
        raise AuthenticationError(f"unknown API key {key_id}", param="authorization")
    if not hmac.compare_digest(record.hash, hash_secret(key_id, secret)):
        raise AuthenticationError(f"API key {key_id} is not valid", param="authorization")
    if revoked or record.revoked_at is not None:
        raise AuthenticationError(f"API key {key_id} has been revoked", param="authorization")
    now = time.time() if now is None else now
    if record.expires_at is not None and now >= record.expires_at:
        raise AuthenticationError(f"API key {key_id} has expired", param="authorization")
    return Principal(
        subject=record.name,
        role=record.role,
        kind="apikey",
        scopes=record.scopes,
        credential_id=record.id,
        expires_at=record.expires_at,
        team=record.team,
        limits=_usage_limits(record),
        models=record.models,
    )


_PARSED_LIMITS: dict[str, tuple[dict[str, Any], Any]] = {}


def _usage_limits(record: ApiKeyRecord) -> Any:
    """The key's ``UsageLimits`` (parsed once per stored record, not per request), or None."""
    if not record.limits:
        return None
    cached = _PARSED_LIMITS.get(record.id)
    if cached is not None and cached[0] is record.limits:
        return cached[1]
    from pydantic import ValidationError as PydanticValidationError

    from mnemos.genome.metering import MAX_RATE, MAX_TOKENS, UsageLimits

    try:
        parsed = UsageLimits.model_validate(record.limits)
    except PydanticValidationError:  # stored before its ceilings: as large as they allow (as good as unlimited)
        doc = dict(record.limits)
        for name in ("rpm", "tpm"):
            if isinstance(doc.get(name), int):
                doc[name] = min(doc[name], MAX_RATE)
        if isinstance(budget := doc.get("budget"), dict) and isinstance(budget.get("tokens"), int):
            doc["budget"] = {**budget, "tokens": min(budget["tokens"], MAX_TOKENS)}
        try:
            parsed = UsageLimits.model_validate(doc)
        except PydanticValidationError:
            raise AuthenticationError("API key carries invalid limits: create another", param="authorization") from None
    from mnemos.soul.limits import floor_budget_window

    parsed = floor_budget_window(parsed)  # a window stored under 1 s, before that was refused: read as 1 s
    if len(_PARSED_LIMITS) > 10_000:
        _PARSED_LIMITS.clear()
    _PARSED_LIMITS[record.id] = (record.limits, parsed)
    return parsed
