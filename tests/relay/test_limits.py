"""Per-key requests- and tokens-per-minute limits hold across two gateway replicas at 2x load.

A bucket holds two seconds of its rate, so over ``T`` seconds a limit admits ``rate * T + burst``;
the tests drive twice the limit for ``T`` seconds and expect that count within ±10%.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from metering_support import api_key, unique
from relay_support import Relay, assert_openai_error
from tests_support import until

pytestmark = pytest.mark.usefixtures("ray_cluster")

SECONDS = 12.0


async def _drive(url: str, key: str, rps: float, seconds: float, body: dict[str, Any]) -> list[Any]:
    """Send ``rps`` requests a second for ``seconds`` (paced, not waiting on answers); the responses."""
    import httpx

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                                 limits=httpx.Limits(max_connections=64)) as http:  # fmt: skip
        start = time.monotonic()
        tasks = []
        for i in range(int(rps * seconds)):
            delay = start + i / rps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(http.post("/v1/chat/completions", json=body)))
        return list(await asyncio.gather(*tasks))


def _body(model: str = "echo") -> dict[str, Any]:
    return {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "a b c d"}]}


def test_rpm_holds_within_ten_percent_at_twice_the_load(governed: Relay) -> None:
    rpm = 600  # 10/s, burst 20
    key = api_key(governed, unique("rpm"), rpm=rpm)
    responses = asyncio.run(_drive(governed.url, key, 2 * rpm / 60, SECONDS, _body()))
    ok = sum(r.status_code == 200 for r in responses)
    refused = [r for r in responses if r.status_code == 429]
    assert ok + len(refused) == len(responses), {r.status_code for r in responses}
    expected = rpm / 60 * SECONDS + rpm / 60 * 2
    assert abs(ok - expected) <= 0.1 * expected, (ok, expected)
    error = assert_openai_error(refused[0], 429, code="rate_limit_exceeded", type_="rate_limit_error")
    assert error["param"] == "key.rpm" and "600 requests per minute" in error["message"], error
    assert int(refused[0].headers["retry-after"]) >= 1


def test_tpm_holds_within_ten_percent_at_twice_the_load(governed: Relay) -> None:
    tpm = 3000  # 50 tokens/s, burst 100
    key = api_key(governed, unique("tpm"), tpm=tpm)
    per_request = 8  # the echo model: 4 prompt words, 4 completion tokens
    responses = asyncio.run(_drive(governed.url, key, 2 * tpm / 60 / per_request, SECONDS, _body()))
    used = [r.json()["usage"]["total_tokens"] for r in responses if r.status_code == 200]
    assert set(used) == {per_request}, set(used)
    expected = tpm / 60 * SECONDS + tpm / 60 * 2
    assert abs(sum(used) - expected) <= 0.1 * expected, (sum(used), expected)
    refused = next(r for r in responses if r.status_code == 429)
    error = assert_openai_error(refused, 429, code="rate_limit_exceeded", type_="rate_limit_error")
    assert error["param"] == "key.tpm" and "tokens per minute" in error["message"], error


def test_team_limit_from_a_policy_is_shared_by_the_team(governed: Relay) -> None:
    """Two API keys of one team share the team's limit, and so does a JWT with the team's claim."""
    import httpx

    from mnemos.soul.store import IdentityStore

    team = unique("team")
    governed.apply({"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": unique("limits")},
                    "spec": {"limits": [{"teams": [team], "rpm": 60}]}})  # fmt: skip  # 1/s, burst 2
    keys = [api_key(governed, unique("member"), team=team) for _ in range(2)]

    def send(key: str) -> httpx.Response:
        return httpx.post(f"{governed.url}/v1/chat/completions", json=_body(),
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip

    # the gateway re-reads Policies every few seconds
    statuses = until(lambda: [send(key) for key in keys * 3], "a 429 of the team's limit", timeout=30, interval=1.0,
                     ready=lambda answers: any(r.status_code == 429 for r in answers))  # fmt: skip
    refused = [r for r in statuses if r.status_code == 429]
    error = assert_openai_error(refused[0], 429, code="rate_limit_exceeded", type_="rate_limit_error")
    assert error["param"] == "team.rpm" and team in error["message"], error

    # A JWT of the same team spends the same (now empty) counter: refused within a few requests.
    token = IdentityStore.from_settings(governed.settings, governed.client.engram).create_token(
        unique("jwt"), "developer", team=team).secret
    answers = [send(token) for _ in range(6)]
    refused = [r for r in answers if r.status_code == 429]
    assert refused, [r.status_code for r in answers]
    error = assert_openai_error(refused[0], 429, code="rate_limit_exceeded", type_="rate_limit_error")
    assert error["param"] == "team.rpm" and team in error["message"], error


def test_overhead_header_on_answers_and_refusals(governed: Relay) -> None:
    import httpx

    key = api_key(governed, unique("hdr"))
    ok = httpx.post(f"{governed.url}/v1/chat/completions", json=_body(), headers={"Authorization": f"Bearer {key}"},
                    timeout=30)  # fmt: skip
    assert ok.status_code == 200 and float(ok.headers["x-mnemos-overhead-ms"]) >= 0
    denied = httpx.post(f"{governed.url}/v1/chat/completions", json=_body(), timeout=30)
    assert denied.status_code == 401 and float(denied.headers["x-mnemos-overhead-ms"]) >= 0
    for path in ("/v1/chat/completions", "/ui/static/console.js", "/ui/signin", "/openapi.json"):  # no sniffing
        answer = ok if path == "/v1/chat/completions" else httpx.get(f"{governed.url}{path}", timeout=30)
        assert answer.headers["x-content-type-options"] == "nosniff", (path, answer.headers)
