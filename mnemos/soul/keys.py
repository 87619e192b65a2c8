"""The signing key ring: Ed25519 (JWS ``EdDSA``) keys in ENGRAM, rotated, published as JWKS.

Layout: ``soul/keys/<kid>.json`` = ``{kid, alg, created_at, not_after, public_pem, private}``
where ``private`` is the PKCS#8 private key encrypted with the master key (AES-256-GCM, see
``mnemos.soul._crypto``) and base64-encoded.

The newest key signs. A key is *retired* as soon as a newer key exists (its retirement time is
the newer key's ``created_at``), so a rotation writes one new record and never edits old ones.
A retired key stays in the JWKS until every token it signed has expired: until
``max(retired_at + token TTL, not_after)`` and the verifiers' clock leeway after that
(``LEEWAY_SECONDS``: a token is accepted that long past its ``exp``), where ``not_after`` is
the latest ``exp`` it signed beyond the token TTL. Each such ``exp`` is a marker of its own,
``soul/keys/expiry/<kid>/<exp>``, never a rewrite of the record: two replicas minting at once
with one key cannot overwrite each other's ``exp`` with a smaller one.
"""

from __future__ import annotations

import base64
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mnemos.engram import Engram
from mnemos.errors import NotFoundError
from mnemos.soul._crypto import decrypt, encrypt

__all__ = ["ALGORITHM", "KEYS_PREFIX", "LEEWAY_SECONDS", "Clock", "KeyRecord", "KeyRing", "rotate_keys"]

KEYS_PREFIX = "soul/keys"
_EXPIRY_PREFIX = f"{KEYS_PREFIX}/expiry"
ALGORITHM = "EdDSA"
LEEWAY_SECONDS = 30.0
"""Clock skew tolerated on ``exp`` and ``iat`` between issuer and verifier (``mnemos.soul.tokens``)."""

Clock = Callable[[], float]


@dataclass(frozen=True)
class KeyRecord:
    """One signing key as stored (the private part stays encrypted)."""

    kid: str
    alg: str
    created_at: float
    not_after: float
    public_pem: str
    private: str

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> KeyRecord:
        return cls(
            kid=str(doc["kid"]),
            alg=str(doc.get("alg", ALGORITHM)),
            created_at=float(doc["created_at"]),
            not_after=float(doc.get("not_after", 0.0)),
            public_pem=str(doc["public_pem"]),
            private=str(doc["private"]),
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "alg": self.alg,
            "created_at": self.created_at,
            "not_after": self.not_after,
            "public_pem": self.public_pem,
            "private": self.private,
        }

    def public_key(self) -> Any:
        """The ``cryptography`` public key object."""
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        return load_pem_public_key(self.public_pem.encode())


def _new_record(now: float) -> KeyRecord:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    kid = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(3)
    pkcs8 = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyRecord(
        kid=kid,
        alg=ALGORITHM,
        created_at=now,
        not_after=0.0,
        public_pem=public_pem.decode(),
        private=base64.b64encode(encrypt(pkcs8, context=f"soul-key:{kid}")).decode(),
    )


class KeyRing:
    """Signing keys persisted in ENGRAM under ``soul/keys/``.

    Args:
        engram: the store.
        rotate_hours: age after which ``rotate()`` (and signing) makes a new key.
        token_ttl: default token lifetime in seconds; a retired key is kept at least this long.
        clock: seconds since the epoch (``time.time``); tests move it forward.
    """

    def __init__(
        self, engram: Engram, *, rotate_hours: float = 24.0, token_ttl: float = 3600.0, clock: Clock = time.time
    ) -> None:
        self.engram = engram
        self.rotate_seconds = rotate_hours * 3600.0
        self.token_ttl = token_ttl
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Any, engram: Engram, *, clock: Clock = time.time) -> KeyRing:
        return cls(
            engram,
            rotate_hours=settings.soul.jwt.rotate_hours,
            token_ttl=settings.soul.policies.token_ttl,
            clock=clock,
        )

    # -- reading -----------------------------------------------------------------------------
    def records(self) -> list[KeyRecord]:
        """Every stored key, oldest first, its ``not_after`` the latest of its expiry markers."""
        out = []
        keys = self.engram.list(KEYS_PREFIX)
        latest: dict[str, float] = {}
        for key in keys:
            if key.startswith(_EXPIRY_PREFIX + "/"):
                kid, _, exp = key[len(_EXPIRY_PREFIX) + 1 :].partition("/")
                latest[kid] = max(latest.get(kid, 0.0), float(exp))
        for key in keys:
            if not key.endswith(".json") or key.startswith(_EXPIRY_PREFIX + "/"):
                continue
            try:
                record = KeyRecord.from_doc(self.engram.read_json(key))
            except NotFoundError:  # pruned concurrently
                continue
            if latest.get(record.kid, 0.0) > record.not_after:
                record = KeyRecord(**{**record.__dict__, "not_after": latest[record.kid]})
            out.append(record)
        return sorted(out, key=lambda r: (r.created_at, r.kid))

    @staticmethod
    def _retirements(records: list[KeyRecord]) -> dict[str, float | None]:
        """``{kid: retired_at}``: the next newer key's creation, ``None`` for the newest."""
        return {r.kid: (records[i + 1].created_at if i + 1 < len(records) else None) for i, r in enumerate(records)}

    def _expires_at(self, record: KeyRecord, retired_at: float | None) -> float | None:
        if retired_at is None:
            return None
        return max(retired_at + self.token_ttl, record.not_after) + LEEWAY_SECONDS

    def valid_records(self) -> list[KeyRecord]:
        """The keys whose tokens may still be valid: the active one and retired ones not yet expired."""
        records = self.records()
        retired = self._retirements(records)
        now = self.clock()
        return [r for r in records if (exp := self._expires_at(r, retired[r.kid])) is None or now <= exp]

    def public_keys(self) -> dict[str, Any]:
        """``{kid: public key}`` of the valid keys."""
        return {r.kid: r.public_key() for r in self.valid_records()}

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set of the valid keys (public parts only)."""
        from jwt.algorithms import OKPAlgorithm

        keys = []
        for record in self.valid_records():
            jwk = OKPAlgorithm.to_jwk(record.public_key(), as_dict=True)
            keys.append({**jwk, "kid": record.kid, "alg": record.alg, "use": "sig"})
        return {"keys": keys}

    # -- writing -----------------------------------------------------------------------------
    def _write(self, record: KeyRecord) -> None:
        self.engram.write_json(f"{KEYS_PREFIX}/{record.kid}.json", record.to_doc())

    def rotate(self, *, force: bool = False) -> KeyRecord:
        """Make a new signing key when there is none, the newest is older than ``rotate_hours``,
        or ``force``; then drop expired retired keys. Returns the active key."""
        records = self.records()
        now = self.clock()
        if force or not records or now - records[-1].created_at >= self.rotate_seconds:
            record = _new_record(now)
            self._write(record)
            from mnemos.soul._audit import audit

            audit(self.engram, "key.rotated", kid=record.kid, previous=records[-1].kid if records else None)
        else:
            record = records[-1]
        self.prune()
        return record

    def active(self) -> KeyRecord:
        """The key that signs now (rotating first when it is due)."""
        return self.rotate()

    def prune(self) -> list[str]:
        """Delete retired keys whose every token has expired; returns their kids."""
        records = self.records()
        retired = self._retirements(records)
        now = self.clock()
        dropped = []
        for record in records:
            exp = self._expires_at(record, retired[record.kid])
            if exp is not None and now > exp:
                self.engram.delete(f"{KEYS_PREFIX}/{record.kid}.json")
                self.engram.delete_prefix(f"{_EXPIRY_PREFIX}/{record.kid}")
                dropped.append(record.kid)
        return dropped

    def private_key(self, record: KeyRecord) -> Any:
        """The decrypted private key of ``record`` (needs the master key)."""
        from cryptography.hazmat.primitives.serialization import load_der_private_key

        der = decrypt(base64.b64decode(record.private), context=f"soul-key:{record.kid}")
        return load_der_private_key(der, password=None)

    def note_expiry(self, record: KeyRecord, exp: float) -> None:
        """Remember that ``record`` signed a token valid until ``exp`` (keeps it until then).

        A token within the TTL needs nothing: the key outlives it (``retired_at + token TTL``).
        A longer one leaves a marker named by its ``exp``; markers are only ever added, so
        concurrent signers each keep theirs and the latest wins on reading (``records``)."""
        if exp <= self.clock() + self.token_ttl:
            return
        self.engram.write_bytes(f"{_EXPIRY_PREFIX}/{record.kid}/{math.ceil(exp)}", b"")


def rotate_keys(settings: Any, engram: Engram) -> str:
    """Rotate when due and prune expired keys (for a WRAITH cron job); returns the active kid."""
    return KeyRing.from_settings(settings, engram).rotate().kid
