"""Identities in ENGRAM: create, list and revoke JWTs and API keys, with audit events.

Layout::

    soul/keys/<kid>.json        signing keys (see keys.py)
    soul/tokens/<jti>.json      issued JWTs: name, role, scopes, expiry (never the token)
    soul/apikeys/<id>.json      API keys: name, role, scopes, expiry, hash (never the secret)
    soul/revoked/<id>.json      revocations the gateway polls (a few seconds to take effect)
    soul/bootstrap.json         marker: the bootstrap admin key was created (its id only)
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mnemos.engram import Engram
from mnemos.errors import NotFoundError, ValidationError
from mnemos.soul._audit import audit, local_actor
from mnemos.soul.apikeys import APIKEYS_PREFIX, KEY_PREFIX, ApiKeyRecord, hash_secret, is_api_key, new_api_key
from mnemos.soul.identity import check_models
from mnemos.soul.keys import KeyRing
from mnemos.soul.limits import check_key_limits
from mnemos.soul.rbac import check_role, check_scopes
from mnemos.soul.tokens import issue_token

__all__ = [
    "MAX_TTL_S",
    "MIN_TTL_S",
    "REVOKED_PREFIX",
    "TOKENS_PREFIX",
    "CreatedCredential",
    "IdentityStore",
    "prune_credentials",
    "check_credential_id",
    "check_name",
    "check_ttl",
    "not_found",
]

TOKENS_PREFIX = "soul/tokens"
REVOKED_PREFIX = "soul/revoked"
MIN_TTL_S = 1.0
"""The shortest lifetime a user may ask a credential for (``POST /v1/tokens``, ``mnemos token create``):
below it, a credential would expire as it is issued (a JWT's ``exp`` is in whole seconds)."""
MAX_TTL_S = 100 * 365 * 86400.0
"""The longest lifetime of any credential (100 years): beyond it an expiry is no date a clock shows.
An API key that should never expire is made without a ttl."""
_ID = re.compile(r"^(tok-[0-9a-f]{12}|[0-9a-f]{16})$")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@:")


@dataclass(frozen=True)
class CreatedCredential:
    """A credential just created: ``secret`` (the JWT or ``mk_…`` key) is shown once."""

    id: str
    kind: str
    name: str
    role: str
    scopes: tuple[str, ...]
    expires_at: float | None
    secret: str

    def public(self) -> dict[str, Any]:
        """Everything but the secret."""
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "role": self.role,
            "scopes": list(self.scopes),
            "expires_at": self.expires_at,
        }


def check_name(name: str, param: str = "name") -> str:
    """A principal (or team) name: 1-128 of letters, digits and ``-_.@:``, not starting as an API key
    does (``mk_``): a name is stored in the clear, listed and audited, so a key pasted in its place
    would be kept and shown wherever the name is (the name is not echoed either)."""
    if not name or len(name) > 128 or not set(name) <= _NAME_CHARS:
        raise ValidationError(f"invalid {param}: use 1-128 letters, digits or -_.@:", param=param)
    if is_api_key(name):
        raise ValidationError(f"invalid {param}: it starts as an API key does ({KEY_PREFIX}), and a {param} is stored "
                              "and shown in the clear; was a key pasted here? choose another name", param=param)
    return name


def check_ttl(ttl: float | None, *, param: str = "ttl") -> None:
    """A lifetime a user asks for: ``None`` (the default), or from ``MIN_TTL_S`` to ``MAX_TTL_S`` seconds."""
    if ttl is None:
        return
    if not ttl >= MIN_TTL_S:
        raise ValidationError(
            f"{param}: {ttl:g} s is shorter than the shortest lifetime of a credential ({MIN_TTL_S:g} s), so it "
            f"would expire as it is issued; give at least {MIN_TTL_S:g}s (e.g. 30m)",
            param=param,
        )
    _check_max_ttl(ttl, param)


def _check_max_ttl(ttl: float, param: str = "ttl") -> None:
    if ttl > MAX_TTL_S:
        raise ValidationError(
            f"{param}: {ttl:g} s is longer than the longest lifetime of a credential ({MAX_TTL_S:g} s, 100 years); "
            "give a shorter ttl, or none for an API key that never expires",
            param=param,
        )


def _checked(team: str, limits: dict[str, Any] | None) -> dict[str, Any] | None:
    """The credential's team checked and its limits validated (``limits.rpm`` … named when bad)."""
    if team:
        check_name(team, "team")
    return check_key_limits(limits) if limits else None


def not_found(credential_id: str) -> NotFoundError:
    """The 404 of an id no credential has, or of one the caller may not manage (the same answer)."""
    return NotFoundError(f"no token or API key with id {credential_id!r}", param="id")


def _number(value: Any) -> float:
    """A stored time as a number (one that is not: never, so a listing never fails on it)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def check_credential_id(credential_id: str) -> str:
    """``credential_id`` if it is one (``tok-<12 hex>``, or an API key's 16 hex digits), else a ValidationError
    that does not echo it: people paste the credential itself where its id belongs."""
    if not _ID.fullmatch(credential_id):
        raise ValidationError(
            "invalid credential id: expected tok-<12 hex> or an API key's 16-hex id (not the credential)", param="id"
        )
    return credential_id


class IdentityStore:
    """Creates, lists and revokes credentials in ENGRAM; every change is an audit event.

    Args:
        engram: the store.
        keyring: signs JWTs (default: built from ``settings``).
        issuer: the ``iss`` of issued tokens.
    """

    def __init__(self, engram: Engram, keyring: KeyRing, *, issuer: str = "soul.mnemos") -> None:
        self.engram = engram
        self.keyring = keyring
        self.issuer = issuer

    @classmethod
    def from_settings(cls, settings: Any, engram: Engram) -> IdentityStore:
        return cls(engram, KeyRing.from_settings(settings, engram), issuer=settings.soul.jwt.issuer)

    # -- create ------------------------------------------------------------------------------
    def create_token(
        self, name: str, role: str, *, ttl: float | None = None, scopes: Iterable[str] = (), actor: str | None = None,
        team: str = "", limits: dict[str, Any] | None = None, limits_key: str = "", parents: Iterable[str] = (),
        audience: str = "", models: Iterable[str] = (),
    ) -> CreatedCredential:
        """Issue a JWT for ``name`` with ``role`` (default TTL: ``soul.policies.tokenTTL``).

        ``team`` and ``limits`` become the token's ``team`` and ``lim`` claims (see ``tokens.py``);
        ``limits_key`` names the credential whose counters the limits spend (default: the token's);
        ``parents`` (the ``par`` claim) the credentials it is made from: revoking any of them refuses it;
        ``audience`` (``aud``): ``console`` for a console session's token; ``models`` (``mdl``): its
        model list, the only models it may call (empty: any).
        """
        check_name(name)
        limits = _checked(team, limits)
        models = check_models(models)
        if ttl is not None and ttl <= 0:
            raise ValidationError("ttl must be positive", param="ttl")
        if ttl is not None:
            _check_max_ttl(ttl)
        parents = tuple(parents)
        issued = issue_token(self.keyring, subject=name, role=role, issuer=self.issuer, ttl=ttl, scopes=scopes,
                             team=team, limits=limits, limits_key=limits_key, parents=parents,
                             audience=audience, models=models)  # fmt: skip
        actor = actor or local_actor()
        self.engram.write_json(
            f"{TOKENS_PREFIX}/{issued.jti}.json",
            {
                "id": issued.jti,
                "kind": "token",
                "name": name,
                "role": issued.role,
                "scopes": list(issued.scopes),
                "created_at": issued.issued_at,
                "expires_at": issued.expires_at,
                "kid": issued.kid,
                "revoked_at": None,
                "created_by": actor,
                "team": team,
                "limits": limits,
                "parents": list(parents),
                "audience": audience,
                "models": list(models),
            },
        )
        audit(self.engram, "identity.created", kind="token", id=issued.jti, name=name, role=role, actor=actor)
        return CreatedCredential(issued.jti, "token", name, role, issued.scopes, issued.expires_at, issued.token)

    def create_api_key(
        self, name: str, role: str, *, ttl: float | None = None, scopes: Iterable[str] = (), actor: str | None = None,
        team: str = "", limits: dict[str, Any] | None = None, models: Iterable[str] = (),
    ) -> CreatedCredential:
        """Create an API key; only its hash is stored. ``ttl`` None: it never expires.

        ``team``, ``limits`` (``{rpm, tpm, budget}``, see ``mnemos.genome.metering.UsageLimits``) and
        ``models`` (the only models it may call; empty: any) are checked here and enforced by the gateway.
        """
        check_name(name)
        limits = _checked(team, limits)
        models = check_models(models)
        check_role(role)
        scopes = check_scopes(scopes)
        if ttl is not None and ttl <= 0:
            raise ValidationError("ttl must be positive", param="ttl")
        if ttl is not None:
            _check_max_ttl(ttl)
        key_id, secret, plaintext = new_api_key()
        now = time.time()
        actor = actor or local_actor()
        record = ApiKeyRecord(
            id=key_id,
            name=name,
            role=role,
            hash=hash_secret(key_id, secret),
            created_at=now,
            scopes=scopes,
            expires_at=None if ttl is None else now + ttl,
            created_by=actor,
            team=team,
            limits=limits or None,
            models=models,
        )
        self.engram.write_json(f"{APIKEYS_PREFIX}/{key_id}.json", record.to_doc())
        audit(self.engram, "identity.created", kind="apikey", id=key_id, name=name, role=role, actor=actor)
        return CreatedCredential(key_id, "apikey", name, role, scopes, record.expires_at, plaintext)

    # -- read --------------------------------------------------------------------------------
    def api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The stored record of an API key, ``None`` when unknown."""
        try:
            return ApiKeyRecord.from_doc(self.engram.read_json(f"{APIKEYS_PREFIX}/{key_id}.json"))
        except NotFoundError:
            return None

    def get(self, credential_id: str) -> dict[str, Any]:
        """The stored record of a token (by ``jti``) or an API key (by id), without its hash.

        Raises:
            ValidationError: ``credential_id`` is not a credential id (never echoed).
            NotFoundError: no token or API key has that id.
        """
        for key, kind in self._locate(credential_id):
            try:
                doc = dict(self.engram.read_json(key))
            except NotFoundError:
                continue
            doc.pop("hash", None)
            doc.setdefault("kind", kind)
            return doc
        raise not_found(credential_id)

    def list(self, *, include_inactive: bool = False) -> list[dict[str, Any]]:
        """Credentials (tokens and API keys) without hashes, newest first.

        Revoked and expired ones are left out unless ``include_inactive``; a token made from a revoked
        credential (a console session of a revoked key) is revoked with it.
        """
        now = time.time()
        revoked = self.revoked_ids()
        out = []
        for prefix in (TOKENS_PREFIX, APIKEYS_PREFIX):
            for key in self.engram.list(prefix):
                try:
                    doc = dict(self.engram.read_json(key))
                except NotFoundError:
                    continue
                doc.pop("hash", None)
                doc.setdefault("kind", "apikey" if prefix == APIKEYS_PREFIX else "token")
                expired = doc.get("expires_at") is not None and now >= _number(doc["expires_at"])
                # its own record, or the revocation the gateway refuses it by (a record restored from
                # before the revocation, or read between the revocation's two writes, says active)
                gone = (doc.get("revoked_at") or doc.get("id") in revoked
                        or any(p in revoked for p in doc.get("parents") or ()))  # fmt: skip
                doc["state"] = "revoked" if gone else "expired" if expired else "active"
                if include_inactive or doc["state"] == "active":
                    out.append(doc)
        return sorted(out, key=lambda d: _number(d.get("created_at") or 0), reverse=True)

    def revoked_ids(self) -> set[str]:
        """Ids of every revoked token and API key."""
        return {key.rsplit("/", 1)[-1].removesuffix(".json") for key in self.engram.list(REVOKED_PREFIX)}

    # -- revoke ------------------------------------------------------------------------------
    def revoke(self, credential_id: str, *, actor: str | None = None) -> dict[str, Any]:
        """Revoke a token (by ``jti``) or an API key (by id); the gateway refuses it within seconds."""
        found = self._locate(credential_id)
        if not found:
            raise not_found(credential_id)
        key, kind = found[0]
        doc = dict(self.engram.read_json(key))
        now = time.time()
        actor = actor or local_actor()
        self.engram.write_json(
            f"{REVOKED_PREFIX}/{credential_id}.json",
            {"id": credential_id, "kind": kind, "revoked_at": now, "expires_at": doc.get("expires_at"), "by": actor},
        )
        if not doc.get("revoked_at"):
            doc["revoked_at"] = now
            self.engram.write_json(key, doc)
        audit(self.engram, "identity.revoked", kind=kind, id=credential_id, name=doc.get("name"), actor=actor)
        doc.pop("hash", None)
        return doc

    def _locate(self, credential_id: str) -> tuple[tuple[str, str], ...]:
        """``(key, kind)`` of the stored records of ``credential_id``, token first."""
        check_credential_id(credential_id)
        return tuple(
            (f"{prefix}/{credential_id}.json", kind)
            for prefix, kind in ((TOKENS_PREFIX, "token"), (APIKEYS_PREFIX, "apikey"))
            if self.engram.exists(f"{prefix}/{credential_id}.json")
        )

    def prune(self, *, now: float | None = None) -> int:
        """``prune_credentials`` of this store."""
        return prune_credentials(self.engram, now=now)


def prune_credentials(engram: Engram, *, now: float | None = None) -> int:
    """Drop revocation markers and token records of credentials expired over a minute ago; returns
    how many. Every console sign-in writes a token record, so without this they only grow (and
    ``list``, which each mint's name check reads, with them). A name stays claimed: of the tokens of
    a name no API key carries, the newest record is kept, since ``check_name_taken`` reads the records
    and a name freed could be minted in another team, becoming the principal that owns its jobs and runs."""
    now = time.time() if now is None else now

    def expired(doc: dict[str, Any]) -> bool:
        exp = doc.get("expires_at")
        return exp is not None and now > _number(exp) + 60.0

    dropped = 0
    for key in engram.list(REVOKED_PREFIX):
        with contextlib.suppress(NotFoundError):
            if expired(engram.read_json(key)):
                engram.delete(key)
                dropped += 1
    keyed = set()
    for key in engram.list(APIKEYS_PREFIX):
        with contextlib.suppress(NotFoundError):
            keyed.add(engram.read_json(key).get("name"))
    tokens: dict[Any, list[tuple[str, dict[str, Any]]]] = {}
    for key in engram.list(TOKENS_PREFIX):
        with contextlib.suppress(NotFoundError):
            doc = engram.read_json(key)
            tokens.setdefault(doc.get("name"), []).append((key, doc))
    for name, records in tokens.items():
        records.sort(key=lambda r: _number(r[1].get("created_at") or 0))
        held = records if name in keyed else records[:-1]  # the newest keeps a name no API key holds
        for key, doc in held:
            if expired(doc):
                engram.delete(key)
                dropped += 1
    return dropped
