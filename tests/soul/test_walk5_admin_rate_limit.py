"""A Policy's ``rateLimit`` for everyone (no ``principals``) of 0.001 requests/s locked every admin
out of the gateway: 429 on every call, the ``DELETE`` of that Policy included, until it was deleted
on the platform's machine. A Policy for everyone no longer limits an admin (``relay.rateLimit``
does); one that names the admin, or ``role:admin``, still does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mnemos.errors import RateLimitError
from mnemos.soul.identity import Principal


def _policy(name: str, principals: list[str]) -> dict:
    return {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": name},
            "spec": {"rateLimit": {"requestsPerSecond": 0.001, "burst": 1, "principals": principals}}}  # fmt: skip


def _guard(tmp_path: Path, *policies: dict):  # noqa: ANN202 - an EdgeGuard
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.genome import Registry, parse_resource
    from mnemos.soul.edge import EdgeGuard
    from mnemos.soul.ratelimit import LocalRateLimiter

    engram = Engram(str(tmp_path / "engram"))
    for doc in policies:
        Registry(engram).apply(parse_resource(doc))
    return EdgeGuard(load_settings(engram={"uri": engram.uri}), engram, limiter=LocalRateLimiter())


ADMIN = Principal("root", "admin", "apikey")
DEVELOPER = Principal("dana", "developer", "apikey")


def test_a_policy_for_everyone_does_not_lock_out_an_admin(tmp_path: Path) -> None:
    guard = _guard(tmp_path, _policy("slow", []))

    async def calls() -> None:
        for _ in range(5):
            await guard.rate_limit(ADMIN)  # relay.rateLimit (50 rps, burst 100): all pass
        await guard.rate_limit(DEVELOPER)
        with pytest.raises(RateLimitError, match=r"policy slow\.rateLimit") as refused:
            await guard.rate_limit(DEVELOPER)
        assert refused.value.param == "policy slow.rateLimit"

    asyncio.run(calls())
    assert asyncio.run(guard.limit_for(ADMIN)) == tuple(guard.default_limit)


@pytest.mark.parametrize("named", ["root", "role:admin"])
def test_a_policy_that_names_an_admin_limits_it(tmp_path: Path, named: str) -> None:
    guard = _guard(tmp_path, _policy("slow", []), _policy("admins", [named]))

    async def calls() -> None:
        await guard.rate_limit(ADMIN)
        with pytest.raises(RateLimitError, match=r"policy admins\.rateLimit"):
            await guard.rate_limit(ADMIN)

    asyncio.run(calls())
