"""API keys stored before the limits had ceilings (rpm, tpm and budget tokens of 10**400 were accepted)
keep working: their limits are read as large as the ceilings allow, not refused as a 500 per request."""

from __future__ import annotations

import time

import pytest

from mnemos.errors import AuthenticationError
from mnemos.genome.metering import MAX_RATE, MAX_TOKENS
from mnemos.soul.apikeys import ApiKeyRecord, hash_secret, verify_api_key


def _record(limits: dict[str, object], key_id: str) -> ApiKeyRecord:
    return ApiKeyRecord(id=key_id, name="old-key", role="developer", hash=hash_secret(key_id, "s3cret"),
                        created_at=time.time(), limits=limits)  # fmt: skip


def test_a_stored_key_with_limits_over_the_ceilings_reads_them_at_the_ceilings() -> None:
    huge = 10**400
    principal = verify_api_key(_record({"rpm": huge, "tpm": 5, "budget": {"tokens": huge, "window": 60}}, "k1"),
                               "k1", "s3cret")  # fmt: skip
    assert principal.limits.rpm == MAX_RATE and principal.limits.tpm == 5
    assert principal.limits.budget.tokens == MAX_TOKENS and principal.limits.budget.window == 60


def test_a_stored_key_whose_limits_cannot_be_read_is_refused_as_a_credential() -> None:
    with pytest.raises(AuthenticationError, match="invalid limits"):
        verify_api_key(_record({"rpm": "many"}, "k2"), "k2", "s3cret")
