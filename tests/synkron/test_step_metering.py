"""A pipeline's model steps spend the limits and budgets of the principal that started the run,
exactly as its requests through the gateway would: a run is no way around an API key's budget, and
its usage lands in the same ledger (``GET /v1/usage``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from synkron_support import PROMPTS
from tests_support import until

HOUR = 3600.0


def _infer_pipeline(folder: Path, limit: int) -> Path:
    (folder / "data").mkdir(exist_ok=True)
    shutil.copy(PROMPTS, folder / "data" / "prompts.jsonl")
    doc = {
        "apiVersion": "synkron.mnemos.dev/v1",
        "kind": "Pipeline",
        "metadata": {"name": "metered-infer"},
        "spec": {
            "steps": [
                {
                    "name": "prepare",
                    "call": "mnemos.synkron.steps:prepare_prompts",
                    "params": {"source": "data/prompts.jsonl", "limit": limit},
                    "outputs": [{"name": "prompts"}],
                },
                {
                    "name": "infer",
                    "modelRef": "echo-syn",
                    "input": "${prompts}",
                    "params": {"max_tokens": 6},
                    "outputs": [{"name": "results"}],
                },
            ]
        },
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _key(subject: str, tokens: int, rpm: int | None = None) -> Any:
    """An API key's principal with a token budget (what the gateway hands the run when a key starts it)."""
    from mnemos.genome.metering import UsageLimits
    from mnemos.soul.identity import Principal

    limits = UsageLimits.model_validate({"budget": {"tokens": tokens, "window": "1h"}, "rpm": rpm})
    return Principal(subject=subject, role="developer", kind="apikey", credential_id=f"k{uuid.uuid4().hex[:10]}",
                     limits=limits)  # fmt: skip


def _ledger(principal: str) -> tuple[int, int]:
    """``(requests, prompt + completion tokens)`` the usage ledger holds for ``principal`` on echo-syn."""
    import ray

    from mnemos.soul.ratelimit import ensure

    rows = [r for r in ray.get(ensure().usage.remote(0.0)) if r["principal"] == principal and r["model"] == "echo-syn"]
    return sum(r["requests"] for r in rows), sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)


def _budget(key: Any) -> dict[str, float]:
    import ray

    from mnemos.soul.ratelimit import ensure

    return ray.get(ensure().budget.remote(f"key:{key.credential_id}", HOUR))  # type: ignore[no-any-return]


def test_infer_steps_are_charged_to_the_key_that_started_the_run(served, tmp_path: Path) -> None:
    key = _key("meter-bot", tokens=100_000, rpm=60)  # a burst of 2: the later records wait for the limit, not fail
    run = served.client.pipelines.run(_infer_pipeline(tmp_path, 4), progress=False, cache=False, principal=key)
    state = run.state()
    assert state["status"] == "succeeded", state["error"]
    assert state["principal"] == "meter-bot" and state["meter"]["limits_key"] == key.credential_id
    results = [json.loads(line) for line in run.read("results").decode().splitlines()]
    used = sum(r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in results)
    assert len(results) == 4 and used > 0
    assert _ledger("meter-bot") == (4, used)  # one ledger request per record, its real token counts
    budget = _budget(key)
    assert budget["tokens"] == used and budget["reserved_tokens"] == 0  # every reservation settled


def test_a_spent_key_budget_fails_the_model_step_naming_the_budget(served, tmp_path: Path) -> None:
    key = _key("meter-tight", tokens=5)  # less than any record's reservation (prompt estimate + max_tokens)
    run = served.client.pipelines.run(_infer_pipeline(tmp_path, 3), progress=False, cache=False, principal=key)
    state = run.state()
    assert state["status"] == "failed"
    error = state["steps"]["infer"]["error"] or state["error"]
    assert "key budget of 5 tokens per 1h is spent" in error and key.credential_id in error, error
    assert _ledger("meter-tight") == (0, 0)  # nothing ran, nothing was charged
    budget = _budget(key)
    assert budget["tokens"] == 0 and budget["reserved_tokens"] == 0


def test_policy_limits_on_the_local_principal_apply_to_its_runs(served, tmp_path: Path) -> None:
    """A notebook's run (no key: ``local:<user>``) is held to Policies naming that principal."""
    from mnemos.synkron._state import principal_default

    me = principal_default()
    policy = {
        "apiVersion": "genome.mnemos.dev/v1",
        "kind": "Policy",
        "metadata": {"name": "step-budget"},
        "spec": {"limits": [{"principals": [me], "models": ["echo-syn"], "budget": {"tokens": 1, "window": "1h"}}]},
    }
    served.client.apply([policy])
    try:
        state = served.client.pipelines.run(_infer_pipeline(tmp_path, 2), progress=False, cache=False).state()
    finally:
        served.client.delete("Policy", "step-budget")
    assert state["status"] == "failed"
    error = state["steps"]["infer"]["error"] or state["error"]
    assert "policy step-budget budget of 1 tokens per 1h is spent" in error and me in error, error


def test_the_first_refusal_stops_the_calls_in_flight() -> None:
    """A spent budget fails the step at once: the records in flight are cancelled, no more start."""
    from mnemos.errors import BudgetExceededError
    from mnemos.synkron._models import bounded_map

    started: list[int] = []
    cancelled: list[int] = []

    async def call(i: int, item: int) -> int:
        started.append(i)
        if i == 0:
            raise BudgetExceededError("key budget of 5 tokens per 1h is spent")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return item

    with pytest.raises(BudgetExceededError, match="is spent"):
        asyncio.run(bounded_map(call, list(range(10)), 3))
    assert sorted(started) == [0, 1, 2] and sorted(cancelled) == [1, 2]
    assert asyncio.run(bounded_map(lambda i, item: asyncio.sleep(0, item * 2), [1, 2, 3], 2)) == [2, 4, 6]


def test_a_space_search_through_the_gateway_is_metered_on_the_spaces_model(served, tmp_path: Path) -> None:
    """The query is embedded by the space's model: the caller's limits and budgets apply to it, and
    it lands in the usage ledger, like ``/v1/embeddings``."""
    import httpx
    import ray
    from synkron_support import model_pipeline
    from transformers import AutoTokenizer

    from mnemos.neuron.runtime import embedding_tokens
    from mnemos.soul.ratelimit import ensure

    state = served.client.pipelines.run(model_pipeline(tmp_path, space="meter-search", limit=3), progress=False).state()
    assert state["status"] == "succeeded", state["error"]
    url = f"http://127.0.0.1:{served.port}/v1/spaces/meter-search/search"
    query = "how do plants make food from light"
    policy = {
        "apiVersion": "genome.mnemos.dev/v1",
        "kind": "Policy",
        "metadata": {"name": "search-budget"},
        "spec": {"limits": [{"principals": ["anonymous"], "models": ["minilm-syn"],
                             "budget": {"tokens": 1, "window": "1h"}}]},
    }  # fmt: skip
    served.client.apply([policy])
    try:
        # the gateway rereads Policies every few seconds
        refused = until(lambda: httpx.post(url, json={"query": query, "k": 1}, timeout=60), "a 429 of the budget",
                        ready=lambda r: r.status_code == 429, timeout=30, interval=0.5)  # fmt: skip
        error = refused.json()["error"]
        assert error["code"] == "insufficient_quota" and "policy search-budget budget" in error["message"], error
    finally:
        served.client.delete("Policy", "search-budget")

    def searched() -> int:
        rows = ray.get(ensure().usage.remote(0.0))
        return sum(r["prompt_tokens"] for r in rows if r["principal"] == "anonymous" and r["model"] == "minilm-syn")

    before = searched()
    answer = until(lambda: httpx.post(url, json={"query": query, "k": 1}, timeout=60), "the search answered again",
                   ready=lambda r: r.status_code == 200, timeout=30, interval=0.5)  # fmt: skip
    assert answer.json()["data"][0]["id"] == "photosynthesis", answer.text
    # the gateway reports settled requests in batches
    until(searched, "the search's usage", ready=lambda tokens: tokens != before, timeout=10, interval=0.2)
    # charged what the model read: MiniLM's tokens with [CLS] and [SEP], not the words of an estimate
    from mnemos.neuron.runtimes.embedding import _default_model_path

    tokenizer = AutoTokenizer.from_pretrained(_default_model_path())
    assert searched() - before == len(tokenizer(query)["input_ids"]) != embedding_tokens([query])
