"""Budgets hold under concurrency across gateway replicas: reserve before, settle after.

Two replicas of the gateway, 32 concurrent streaming clients on one API key with a spend budget:
the spend recorded equals what the clients were told they used, it never passes the budget by more
than the reservations in flight, and once the budget is spent every request gets 429 naming it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from metering_support import api_key, priced_model, spend, unique, usage
from relay_support import Relay, assert_openai_error, wait_until

pytestmark = pytest.mark.usefixtures("ray_cluster")

BUDGET = 0.05
PROMPT = "one two three four five six seven eight"
MAX_TOKENS = 8


async def _stream_until_refused(client: Any, model: str, results: list[dict[str, Any]], limit: int) -> None:
    import openai

    for _ in range(limit):
        try:
            stream = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=MAX_TOKENS, stream=True,
                stream_options={"include_usage": True},
            )
            usage = None
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
            assert usage is not None
            results.append({"prompt": usage.prompt_tokens, "completion": usage.completion_tokens})
        except openai.RateLimitError as exc:
            results.append({"refused": exc.response})
            return


def test_budget_holds_for_32_streaming_clients_on_two_replicas(governed: Relay) -> None:
    import httpx
    import openai

    model = unique("priced")
    governed.apply(priced_model(model))
    key = api_key(governed, unique("budget"), team="bench", budget={"amount": BUDGET, "window": "1d"})
    admin = api_key(governed, unique("admin"), "admin")
    results: list[dict[str, Any]] = []

    async def run() -> None:
        client = openai.AsyncOpenAI(base_url=f"{governed.url}/v1", api_key=key, max_retries=0, timeout=60)
        try:
            await asyncio.gather(*(_stream_until_refused(client, model, results, 30) for _ in range(32)))
        finally:
            await client.close()

    asyncio.run(run())
    served = [r for r in results if "refused" not in r]
    refused = [r for r in results if "refused" in r]
    assert served and len(refused) == 32, (len(served), len(refused))
    for r in refused:
        error = assert_openai_error(r["refused"], 429, code="insufficient_quota", type_="insufficient_quota")
        assert "budget" in error["message"] and error["param"] == "key.budget", error
        assert int(r["refused"].headers["retry-after"]) >= 1
        assert r["refused"].headers["x-should-retry"] == "false"  # the OpenAI SDKs retry it no more
    received = sum(spend(r["prompt"], r["completion"]) for r in served)
    reservation = (len(PROMPT) // 2 + 4 + MAX_TOKENS) * 0.2 / 1000  # one request's ceiling
    # Recorded spend (reported in batches by both replicas) equals what the clients received.
    try:
        rows = wait_until(lambda: (u := usage(governed, admin, model=model))["total"]["requests"] == len(served)
                          and u, timeout=30)  # fmt: skip
    except AssertionError:
        raise AssertionError((len(served), usage(governed, admin, model=model))) from None
    assert rows["total"]["spend"] == pytest.approx(received, abs=1e-9)
    assert rows["total"]["prompt_tokens"] == sum(r["prompt"] for r in served)
    # Overspend is bounded by the reservations in flight (here: none can pass, each used < its ceiling).
    assert received <= BUDGET + 32 * reservation
    assert received <= BUDGET + 1e-9
    assert received >= BUDGET - 32 * reservation  # the budget was used, not refused early
    # Spend the rest (the clients stopped at their first refusal while others were still in flight):
    # once what is left cannot cover a request's ceiling, every request is refused naming the budget.
    body = {"model": model, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": PROMPT}]}
    with httpx.Client(base_url=governed.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        statuses = [http.post("/v1/chat/completions", json=body).status_code for _ in range(10)]
        assert 429 in statuses, statuses
        for _ in range(5):
            error = assert_openai_error(http.post("/v1/chat/completions", json=body), 429,
                                        code="insufficient_quota", type_="insufficient_quota")  # fmt: skip
            assert "budget" in error["message"] and error["param"] == "key.budget"
        final = wait_until(lambda: (u := usage(governed, admin, model=model))["total"]["requests"]
                           == len(served) + statuses.count(200) and u, timeout=30)  # fmt: skip
    assert BUDGET - reservation <= final["total"]["spend"] <= BUDGET + 1e-9
