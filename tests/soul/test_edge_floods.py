"""Floods of refused requests stay bounded (the edge guard, served on 127.0.0.1 as RELAY serves it):

- the audit log gets at most ``refusals_per_client`` refusal events per client and window, then one
  summary event; a path the caller chose is cut;
- API key look-ups: one ENGRAM read per unknown id however many requests name it, none for ids the
  store never mints, and made-up ids never evict a known key from the cache;
- each client address may cause ``unknown_keys_per_client`` reads of ids never found, then gets 429
  without a read, while keys already found, JWTs and other addresses go on working.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from tests_support import until

from mnemos.errors import AuthenticationError
from mnemos.trace.lineage import events


def _refusals(engram: Any) -> list[dict[str, Any]]:
    return [e["attrs"] for e in events(engram) if e["type"] == "audit" and e["attrs"]["action"] == "auth.refused"]


@pytest.fixture()
def edge(tmp_path: Path, make_settings: Any, make_app: Any, serve: Any, request: Any) -> Iterator[dict[str, Any]]:
    """A guard (``refusals_per_client``/``refusal_window_s`` from the test's ``param``, if any), its
    ENGRAM, identity store and app served on 127.0.0.1, with a guarded catch-all ``GET /v1/...``."""
    from mnemos.engram import Engram
    from mnemos.soul import EdgeGuard, IdentityStore, LocalRateLimiter

    settings = make_settings(tmp_path)
    engram = Engram.from_settings(settings)
    guard = EdgeGuard(settings, engram, limiter=LocalRateLimiter(), **getattr(request, "param", {}))
    app = make_app(guard)

    @app.get("/v1/{rest:path}")
    async def anything(req: Request, rest: str) -> dict[str, Any]:
        return {"principal": (await guard.admit(req, "read-lineage")).subject}

    with serve(app) as served, httpx.Client(base_url=served.url, timeout=30) as client:
        store = IdentityStore.from_settings(settings, engram)
        yield {"guard": guard, "engram": engram, "store": store, "client": client}


@pytest.mark.parametrize("edge", [{"unknown_key_window_s": 3600.0}], indirect=True)  # no refill while it runs
def test_a_flood_of_refusals_writes_the_bound_and_one_summary(edge: dict[str, Any]) -> None:
    guard, engram, client = edge["guard"], edge["engram"], edge["client"]
    path = "/v1/" + "A" * 8000
    statuses = []
    for _ in range(200):
        key = f"mk_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
        statuses.append(client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code)
    assert statuses == [401] * 30 + [429] * 170  # past 30 look-ups of unknown ids: refused without one
    viewer = edge["store"].create_token("vera", "viewer").secret  # a principal's own refusal is still written
    assert client.post("/v1/deploy", headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    asyncio.run(guard.flush_audit())

    written = _refusals(engram)
    anonymous = [a for a in written if "subject" not in a]
    assert len(anonymous) == 20  # the default bound per client and minute; no summary before the window ends
    for attrs in anonymous:
        assert attrs["status"] == 401 and attrs["client"] == "127.0.0.1"
        assert attrs["path"] == "/v1/" + "A" * 252 + "…[cut: 8004 chars]"
    assert [(a["subject"], a["status"], a["path"]) for a in written if "subject" in a] == [("vera", 403, "/v1/deploy")]

    asyncio.run(guard.aclose())  # shutdown writes what is pending: one summary for the 180 left out
    summaries = [a for a in _refusals(engram) if "more" in a]
    assert summaries == [
        {
            "action": "auth.refused",
            "client": "127.0.0.1",
            "more": 180,
            "reason": "… and 180 more refusals from 127.0.0.1 in the last 60 s",
        }
    ]


@pytest.mark.parametrize("edge", [{"refusals_per_client": 2, "refusal_window_s": 2.0}], indirect=True)
def test_the_summary_is_written_when_the_window_ends(edge: dict[str, Any]) -> None:
    engram, client = edge["engram"], edge["client"]
    for _ in range(5):
        assert client.get("/v1/lineage/x", headers={"Authorization": "Bearer mk_0_x"}).status_code == 401
    # no further request: the guard writes the summary itself
    until(lambda: _refusals(engram), "the summary of the refusals", ready=lambda seen: any("more" in a for a in seen),
          timeout=15, interval=0.2)  # fmt: skip
    refusals = _refusals(engram)
    assert [a.get("more") for a in refusals] == [None, None, 3]
    assert refusals[-1]["reason"] == "… and 3 more refusals from 127.0.0.1 in the last 2 s"

    assert client.get("/v1/lineage/x", headers={"Authorization": "Bearer mk_0_x"}).status_code == 401
    asyncio.run(edge["guard"].flush_audit())
    assert len(_refusals(engram)) == 4  # a new window: written again


def _count_key_reads(engram: Any) -> list[str]:
    """The API key records ``engram`` is asked for from now on (ENGRAM itself answers)."""
    reads: list[str] = []
    read_json = engram.read_json

    def counted(key: str) -> Any:
        if key.startswith("soul/apikeys/"):
            reads.append(key.rsplit("/", 1)[-1].removesuffix(".json"))
        return read_json(key)

    engram.read_json = counted
    return reads


def test_unknown_key_ids_cost_one_read_and_never_evict_a_known_key(edge: dict[str, Any]) -> None:
    guard, store = edge["guard"], edge["store"]
    good = store.create_api_key("ops", "operator")
    reads = _count_key_reads(edge["engram"])

    async def refused(credential: str) -> None:
        with pytest.raises(AuthenticationError, match="unknown API key"):
            await guard.verify_credential(credential)

    async def scenario() -> None:
        same = f"mk_{secrets.token_hex(8)}_x"
        await asyncio.gather(*(refused(same) for _ in range(100)))  # concurrent, as a flood is
        await refused(same)
        assert reads == [same[3:19]]
        await refused(f"mk_{'ab' * 20}_x")  # 40 hex: no key ever had such an id, nothing to read
        assert len(reads) == 1

        for _ in range(101):  # 10,100 made-up ids, more than the cache holds
            assert (await guard.verify_credential(good.secret)).subject == "ops"
            await asyncio.gather(*(refused(f"mk_{secrets.token_hex(8)}_x") for _i in range(100)))
        assert (await guard.verify_credential(good.secret)).subject == "ops"
        assert reads.count(good.id) == 1  # read once, never evicted by the flood

        store.revoke(good.id)  # the cache never delays a revocation
        await guard.revoked(good.id)
        with pytest.raises(AuthenticationError, match="revoked"):
            await guard.verify_credential(good.secret)

    asyncio.run(scenario())


def _get(client: Any, credential: str) -> Any:
    return client.get("/v1/lineage/x", headers={"Authorization": f"Bearer {credential}"})


@pytest.mark.parametrize("edge", [{"apikey_cache_s": 0.5, "unknown_key_window_s": 3600.0}], indirect=True)
def test_unknown_key_lookups_are_budgeted_per_client_address(edge: dict[str, Any]) -> None:
    client, store = edge["client"], edge["store"]
    seen = store.create_api_key("seen", "operator")  # used before the flood: this replica has found it
    fresh = store.create_api_key("fresh", "operator")  # first used after it
    reads = _count_key_reads(edge["engram"])
    assert _get(client, seen.secret).json() == {"principal": "seen"}

    async def flood(n: int) -> list[httpx.Response]:  # concurrent, from 127.0.0.3
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.3")
        async with httpx.AsyncClient(base_url=client.base_url, transport=transport, timeout=30) as flooder:
            return await asyncio.gather(*(_get(flooder, f"mk_{secrets.token_hex(8)}_x") for _ in range(n)))

    answers = asyncio.run(flood(40))
    assert sorted(a.status_code for a in answers) == [401] * 30 + [429] * 10
    assert len(reads) == 31  # seen's record, then one per made-up id within the budget; none past it
    refused = next(a for a in answers if a.status_code == 429)
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["param"] == "authorization", error
    assert error["message"].startswith("too many look-ups of unknown API keys from 127.0.0.3: at most 30 per 3600 s")
    assert 100 <= int(refused.headers["Retry-After"]) <= 120  # one look-up back every 120 s

    with httpx.Client(base_url=client.base_url, transport=httpx.HTTPTransport(local_address="127.0.0.3")) as same:
        assert _get(same, f"mk_{secrets.token_hex(8)}_x").status_code == 429
        time.sleep(0.6)  # seen's record has left the cache: it is read again, and never held back
        assert _get(same, seen.secret).json() == {"principal": "seen"}
        assert reads.count(seen.id) == 2
        assert _get(same, store.create_token("tom", "operator").secret).json() == {"principal": "tom"}  # a JWT
        assert _get(same, fresh.secret).status_code == 429  # a key new to this replica waits, from here only
    assert _get(client, fresh.secret).json() == {"principal": "fresh"}  # 127.0.0.1: its own budget
    assert _get(client, f"mk_{secrets.token_hex(8)}_x").status_code == 401
    assert len(reads) == 34


@pytest.mark.parametrize("edge", [{"unknown_key_window_s": 3600.0}], indirect=True)
def test_console_sign_ins_spend_the_same_budget_of_unknown_keys(edge: dict[str, Any]) -> None:
    """The console's sign-in form and its cookie verify API keys too: a flood through them is
    charged to the client address as the API's bearer headers are, not an unmetered side door."""
    from types import SimpleNamespace

    from mnemos.errors import RateLimitError
    from mnemos.relay.console.session import COOKIE, Sessions

    guard, store = edge["guard"], edge["store"]
    reads = _count_key_reads(edge["engram"])
    sessions = Sessions(SimpleNamespace(enabled=True, require_guard=lambda: guard))

    def request(address: str, cookie: str = "") -> Request:
        headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
        return Request({"type": "http", "method": "POST", "path": "/ui/signin", "query_string": b"",
                        "headers": headers, "client": (address, 40000)})  # fmt: skip

    async def scenario() -> None:
        for _ in range(30):
            with pytest.raises(AuthenticationError):
                await sessions.sign_in(f"mk_{secrets.token_hex(8)}_x", request("127.0.0.9"))
        with pytest.raises(RateLimitError) as spent:
            await sessions.sign_in(f"mk_{secrets.token_hex(8)}_x", request("127.0.0.9"))
        assert spent.value.param == "authorization" and "127.0.0.9" in spent.value.message
        with pytest.raises(AuthenticationError):  # a made-up key as the cookie: the sign-in page, no read
            await sessions.principal(request("127.0.0.9", cookie=f"mk_{secrets.token_hex(8)}_x"))
        assert len(reads) == 30
        key = store.create_api_key("ann", "developer")
        principal, _, _ = await sessions.sign_in(key.secret, request("127.0.0.10"))  # another address
        assert principal.subject == "ann"

    asyncio.run(scenario())
