"""The gateway over real NEURON runtimes: the tiny chat model (transformers) and MiniLM (embedding).

Both Models come from ``deployments/local/models.yaml``, as the local demo applies them, except that
``tiny-chat`` runs here on the ``transformers`` runtime (the demo serves it on vLLM, which
``test_vllm_serving.py`` covers with one engine for the whole suite).
"""

from __future__ import annotations

import concurrent.futures
import math
from pathlib import Path

import httpx
import pytest
import yaml
from relay_support import Relay, assert_openai_error, wait_until

MODELS_YAML = Path(__file__).resolve().parents[2] / "deployments" / "local" / "models.yaml"
HELLO = [{"role": "user", "content": "Hello! How are you today?"}]
TRANSFORMERS_PARAMS = {"maxTokens": 512, "maxBatchSize": 8, "batchWaitMs": 5, "dtype": "float32", "device": "cpu"}


@pytest.fixture(scope="module")
def served(relay: Relay, tiny_chat_ref: str) -> Relay:
    docs = list(yaml.safe_load_all(MODELS_YAML.read_text()))
    chat = next(d for d in docs if d["metadata"]["name"] == "tiny-chat")
    chat["spec"]["runtime"] = {"engine": "transformers", "params": TRANSFORMERS_PARAMS}
    chat["spec"]["resources"] = {"cpus": 0.5}
    relay.client.apply(docs)
    status = relay.sync(timeout=600)
    for name in ("tiny-chat", "minilm"):
        assert status["models"][name]["status"] == "ready", status["models"][name]
    return relay


def test_local_models_are_listed(served: Relay) -> None:
    cards = {m.id: m for m in served.openai().models.list().data}
    assert {"tiny-chat", "minilm"} <= set(cards)
    assert cards["minilm"].model_extra["mnemos"]["engine"] == "embedding"


def test_tiny_chat_completion_and_stream(served: Relay) -> None:
    client = served.openai()
    reply = client.chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=8, seed=3)
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 8
    chunks = list(client.chat.completions.create(model="tiny-chat", messages=HELLO, max_tokens=8, seed=3, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content  # same seed, same text
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason


def test_sixteen_concurrent_tiny_chats(served: Relay) -> None:
    client = served.openai()

    def ask(i: int) -> str | None:
        reply = client.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": f"Question {i}?"}], max_tokens=6
        )
        return reply.choices[0].finish_reason

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        finishes = list(pool.map(ask, range(16)))
    assert len(finishes) == 16 and all(f in ("stop", "length") for f in finishes)


def test_minilm_embeddings_have_384_dimensions(served: Relay) -> None:
    client = served.openai()
    texts = ["The cat sleeps in the sun.", "A cat is sleeping in the sunshine.", "Quarterly tax filing deadlines."]
    result = client.embeddings.create(model="minilm", input=texts)  # base64 on the wire, decoded by the client
    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-3 for v in vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    floats = client.embeddings.create(model="minilm", input=texts[0], encoding_format="float")
    assert max(abs(x - y) for x, y in zip(floats.data[0].embedding, vectors[0], strict=True)) < 1e-6
    assert result.usage.prompt_tokens > 0
    # charged for what the model read: MiniLM reads 256 tokens of a text, this one has 1,000 words
    long = client.embeddings.create(model="minilm", input="word " * 1000)
    assert long.usage.prompt_tokens == long.usage.total_tokens == 256


def test_embedding_model_refuses_chat_and_wrong_dimensions(served: Relay) -> None:
    response = httpx.post(f"{served.url}/v1/chat/completions", json={"model": "minilm", "messages": HELLO})
    assert_openai_error(response, 400, param="model")
    response = httpx.post(f"{served.url}/v1/embeddings", json={"model": "minilm", "input": "x", "dimensions": 12})
    assert_openai_error(response, 422, param="dimensions")
    response = httpx.post(f"{served.url}/v1/embeddings", json={"model": "tiny-chat", "input": "x"})
    assert 400 <= response.status_code < 500
    assert_openai_error(response, response.status_code)


def test_client_disconnect_cancels_the_generation(served: Relay) -> None:
    """A streamed generation stops when its client goes away (seen in the replica's counters)."""
    body = {"model": "tiny-chat", "messages": HELLO, "max_tokens": 480, "seed": 1, "temperature": 1.0, "stream": True}
    url = f"{served.url}/v1/chat/completions"
    before = served.model_stats("tiny-chat")
    with httpx.Client(timeout=120) as client, client.stream("POST", url, json=body) as response:
        full = [line for line in response.iter_lines() if line]
    after_full = wait_until(lambda: (s := served.model_stats("tiny-chat"))["active"] == 0 and s, timeout=60)
    produced = after_full["chunks"] - before["chunks"]
    assert full[-1] == "data: [DONE]" and produced >= 200, produced  # seed 1 runs to the token limit

    with httpx.Client(timeout=120) as client, client.stream("POST", url, json=body) as response:
        lines = response.iter_lines()
        for _ in range(4):
            next(lines)
    stats = wait_until(
        lambda: (
            (s := served.model_stats("tiny-chat"))["cancelled"] > after_full["cancelled"] and s["active"] == 0 and s
        ),
        timeout=60,
    )
    assert stats["cancelled"] == after_full["cancelled"] + 1
    assert stats["chunks"] - after_full["chunks"] < produced // 2
