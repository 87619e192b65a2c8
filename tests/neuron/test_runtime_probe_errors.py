"""What a runtime answers a request it cannot serve: the status and code clients act on.

- A prompt past the transformers model's context was a 422 ``validation_error`` naming
  ``messages`` (also for a completion's ``prompt``), where a vLLM model answers 400
  ``context_length_exceeded``, the code clients such as LangChain trim a conversation on.
  A megabyte of prompt was tokenized first (about a second of the replica's event loop).
- ``/v1/embeddings`` of a generating model was a 404 ``not_found``: OpenAI clients read it as
  "no such model" (a vLLM model answers 400 naming ``model``).
- The ``echo`` runtime ignored ``stop``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnemos.errors import BadRequestError, ContextLengthError
from mnemos.neuron import GenerationRequest, runtime_class
from mnemos.neuron.runtimes.transformers import TransformersRuntime


@pytest.fixture(scope="module")
def runtime(tiny_model_dir: Path) -> Iterator[TransformersRuntime]:
    rt = runtime_class("transformers")(str(tiny_model_dir), {"batchWaitMs": 0})
    assert isinstance(rt, TransformersRuntime)
    asyncio.run(rt.start())
    yield rt
    asyncio.run(rt.stop())


async def _chunks(runtime: object, request: GenerationRequest) -> list[tuple[str, str | None, int, int]]:
    return [(c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens)
            async for c in runtime.generate(request)]  # type: ignore[attr-defined]  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (GenerationRequest(messages=[{"role": "user", "content": "word " * 600}]), "messages"),
        (GenerationRequest(prompt="word " * 600), "prompt"),
    ],
)
def test_a_prompt_past_the_context_is_context_length_exceeded(
    runtime: TransformersRuntime, request_: GenerationRequest, param: str
) -> None:
    with pytest.raises(ContextLengthError) as info:
        asyncio.run(_chunks(runtime, request_))
    error = info.value.to_openai()["error"]
    assert (info.value.status, error["code"], error["param"]) == (400, "context_length_exceeded", param)
    assert f"maximum context length is {runtime.max_context} tokens" in error["message"]
    counted = re.search(r"your prompt contains (\d+) tokens", error["message"])
    assert counted is not None and int(counted.group(1)) >= 600, error["message"]  # 600 words (and the template)


def test_a_megabyte_prompt_is_refused_by_its_length_before_it_is_tokenized(runtime: TransformersRuntime) -> None:
    bound = runtime.max_context * runtime.max_chars_per_token
    with pytest.raises(ContextLengthError) as info:
        asyncio.run(_chunks(runtime, GenerationRequest(prompt="lorem ipsum " * 90_000)))
    assert info.value.param == "prompt"
    assert f"more than {bound} characters" in info.value.message
    # a text at the bound is tokenized and counted (a prompt of short tokens may still fit)
    with pytest.raises(ContextLengthError) as counted:
        asyncio.run(_chunks(runtime, GenerationRequest(prompt="x " * (bound // 2))))
    assert "characters" not in counted.value.message and "tokens, which exceeds" in counted.value.message


def test_a_prompt_that_fits_is_still_served(runtime: TransformersRuntime) -> None:
    chunks = asyncio.run(_chunks(runtime, GenerationRequest(prompt="word " * 100, max_tokens=3, temperature=0)))
    assert chunks[-1][1] in ("stop", "length") and chunks[-1][2] > 100


def test_embeddings_of_a_generating_model_are_a_bad_request_naming_the_model(runtime: TransformersRuntime) -> None:
    with pytest.raises(BadRequestError) as info:
        asyncio.run(runtime.embed(["x"]))
    assert (info.value.status, info.value.param) == (400, "model")
    with pytest.raises(BadRequestError) as generating:
        embedder = runtime_class("embedding")(None, {})
        asyncio.run(_chunks(embedder, GenerationRequest(prompt="x")))
    assert (generating.value.status, generating.value.param) == (400, "model")


@pytest.mark.parametrize(
    ("stop", "max_tokens", "text", "finish", "completion_tokens"),
    [
        (["three"], 16, "one two ", "stop", 3),
        (["o t"], 16, "one tw", "stop", 2),
        (["one"], 16, "", "stop", 0),
        (["five"], 3, "one two three", "length", 3),  # a stop string past the token limit is never reached
        ([""], 16, "one two three four five", "stop", 5),  # an empty stop string asks for nothing
    ],
)
def test_echo_honours_stop(stop: list[str], max_tokens: int, text: str, finish: str, completion_tokens: int) -> None:
    echo = runtime_class("echo")(None, {})
    request = GenerationRequest(prompt="one two three four five", stop=stop, max_tokens=max_tokens)
    chunks = asyncio.run(_chunks(echo, request))
    assert "".join(c[0] for c in chunks) == text
    assert [c[1] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1][1:] == (finish, 5, completion_tokens)
