"""Validly signed tokens whose claims are of the wrong shape: each a 401 naming why, never a 500."""

from __future__ import annotations

import time

import jwt
import pytest

from mnemos.engram import Engram
from mnemos.errors import AuthenticationError
from mnemos.soul import KeyRing, verify_token

ISSUER = "soul.mnemos"


def _signed(ring: KeyRing, **claims: object) -> str:
    record = ring.active()
    now = int(time.time())
    base = {"iss": ISSUER, "sub": "forge", "role": "developer", "iat": now, "exp": now + 600, "jti": "tok-aaaaaaaaaaaa"}
    return jwt.encode({**base, **claims}, ring.private_key(record), algorithm="EdDSA", headers={"kid": record.kid})


@pytest.mark.parametrize("aud", [["console"], {"console": 1}, 5])
def test_an_audience_that_is_not_a_string_is_refused(local_engram: Engram, aud: object) -> None:
    ring = KeyRing(local_engram)
    with pytest.raises(AuthenticationError, match="unknown audience"):  # was a TypeError: a 500 at the gateway
        verify_token(_signed(ring, aud=aud), ring.public_keys(), issuer=ISSUER)


def test_a_token_not_valid_yet_says_so(local_engram: Engram) -> None:
    ring = KeyRing(local_engram)
    with pytest.raises(AuthenticationError, match="not valid yet"):  # was "malformed token"
        verify_token(_signed(ring, nbf=int(time.time()) + 3600), ring.public_keys(), issuer=ISSUER)
