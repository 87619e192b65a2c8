"""Chat checks shared by the transformers and vLLM runtime tests.

``run_chat_checks(runtime)`` exercises a started runtime and returns what it saw as plain data;
``assert_chat_checks(seen)`` states what every generating runtime must do.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mnemos.neuron import GenerationRequest, Runtime
from mnemos.neuron.runtimes.transformers import chat_prompt_ids

MESSAGES = [{"role": "user", "content": "Hello! How are you today?"}]


def request(i: int = 0, **kw: Any) -> GenerationRequest:
    """A chat request whose prompt differs with ``i``."""
    content = f"Hello number {i}! How are you today?" + " Tell me more." * i
    kw.setdefault("temperature", 0.0)
    kw.setdefault("request_id", f"r{i}")
    return GenerationRequest(messages=[{"role": "user", "content": content}], **kw)


async def collect(runtime: Runtime, req: GenerationRequest) -> dict[str, Any]:
    chunks = [c async for c in runtime.generate(req)]
    last = chunks[-1]
    return {
        "text": "".join(c.text for c in chunks),
        "chunks": len(chunks),
        "finish_reasons": [c.finish_reason for c in chunks],
        "prompt_tokens": last.prompt_tokens,
        "completion_tokens": last.completion_tokens,
    }


async def _cancel_early(runtime: Runtime) -> int:
    stream = runtime.generate(request(3, max_tokens=200))
    seen = 0
    async for chunk in stream:
        seen += bool(chunk.text)
        if seen == 2:
            break
    await stream.aclose()
    return seen


async def run_chat_checks(runtime: Runtime, tokenizer: Any) -> dict[str, Any]:
    """Run every check on a started runtime; returns observations (JSON-serialisable)."""
    seen: dict[str, Any] = {}
    first = await collect(runtime, GenerationRequest(messages=MESSAGES, max_tokens=12, temperature=0.0))
    seen["chat"] = first
    seen["expected_prompt_tokens"] = len(chat_prompt_ids(tokenizer, GenerationRequest(messages=MESSAGES)))
    seen["greedy_again"] = await collect(runtime, GenerationRequest(messages=MESSAGES, max_tokens=12, temperature=0.0))
    long = await collect(runtime, request(1, max_tokens=24))
    text = long["text"]
    stop = next((text[i : i + 3] for i in range(4, len(text) - 3) if text[i : i + 3].strip()), None)
    seen["stop"] = {"full": text, "stop": stop}
    if stop is not None:
        seen["stop"]["result"] = await collect(runtime, request(1, max_tokens=24, stop=[stop]))
    sampled = request(2, max_tokens=16, temperature=1.0, top_p=0.9, seed=1234)
    seen["seeded"] = [(await collect(runtime, sampled))["text"], (await collect(runtime, sampled))["text"]]
    seen["sequential"] = [(await collect(runtime, request(i, max_tokens=16)))["text"] for i in range(8)]
    results = await asyncio.gather(*(collect(runtime, request(i, max_tokens=16)) for i in range(8)))
    seen["concurrent"] = [r["text"] for r in results]
    seen["concurrent_finish"] = [r["finish_reasons"][-1] for r in results]
    seen["cancel_chunks"] = await _cancel_early(runtime)
    seen["after_cancel"] = await collect(runtime, request(4, max_tokens=4))
    seen["healthy"] = await runtime.health()
    return seen


def assert_chat_checks(seen: dict[str, Any]) -> None:
    """What every generating runtime must do with the tiny model."""
    chat = seen["chat"]
    assert chat["text"], chat
    assert chat["chunks"] >= 2, "the output must stream in several chunks"
    assert chat["finish_reasons"][:-1] == [None] * (chat["chunks"] - 1)
    assert chat["finish_reasons"][-1] in ("stop", "length")
    assert chat["prompt_tokens"] == seen["expected_prompt_tokens"] > 0
    assert 1 <= chat["completion_tokens"] <= 12
    if chat["finish_reasons"][-1] == "length":
        assert chat["completion_tokens"] == 12
    assert seen["greedy_again"]["text"] == chat["text"], "greedy decoding must be deterministic"
    stop = seen["stop"]
    assert stop["stop"], f"no stop string could be taken from {stop['full']!r}"
    assert stop["result"]["text"] == stop["full"][: stop["full"].find(stop["stop"])]
    assert stop["result"]["finish_reasons"][-1] == "stop"
    assert seen["seeded"][0] == seen["seeded"][1], "the same seed must sample the same text"
    assert all(seen["concurrent"]) and all(r in ("stop", "length") for r in seen["concurrent_finish"])
    assert seen["cancel_chunks"] == 2
    assert seen["after_cancel"]["completion_tokens"] >= 1
    assert seen["healthy"] is True
