"""OpenAI parameters the echo and transformers runtimes cannot honour, as a client meets them.

They were accepted and ignored: ``presence_penalty: 1.5``, ``frequency_penalty``, ``logit_bias``
and a completion's ``suffix`` answered 200 with what the model would have said without them
(vLLM applies the penalties and the bias, and refuses a ``suffix`` its model cannot fill in).
Now they are 422 naming the field, values that ask for nothing (``0``, ``{}``, ``""``) still
served. Echo ignored ``stop``. Through the gateway, a prompt past a transformers model's context
was 422 ``validation_error`` naming ``messages`` (also for ``/v1/completions``), and
``/v1/embeddings`` of a generating model 404 ``not_found``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from relay_support import Relay, assert_openai_error

CHAT = [{"role": "user", "content": "one two three four five"}]
PATHS = {"/v1/chat/completions": {"messages": CHAT}, "/v1/completions": {"prompt": "one two three four five"}}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize(
    "extra",
    [{"presence_penalty": 1.5}, {"frequency_penalty": -0.5}, {"logit_bias": {"50256": -100}}],
    ids=lambda extra: next(iter(extra)),
)
def test_sampling_fields_echo_cannot_apply_are_refused_by_name(relay: Relay, path: str, extra: dict) -> None:
    response = httpx.post(f"{relay.url}{path}", json={"model": "echo", **PATHS[path], **extra})
    field = next(iter(extra))
    error = assert_openai_error(response, 422, code="validation_error", param=field)
    assert "echo runtime" in error["message"]


def test_a_suffix_is_refused_by_name(relay: Relay) -> None:
    response = httpx.post(f"{relay.url}/v1/completions", json={"model": "echo", "prompt": "a b", "suffix": "end"})
    assert_openai_error(response, 422, param="suffix")


@pytest.mark.parametrize("path", list(PATHS))
def test_values_that_ask_for_nothing_are_served(relay: Relay, path: str) -> None:
    neutral = {"presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {}, "top_k": 5}  # top_k: vLLM's own
    if path == "/v1/completions":
        neutral["suffix"] = ""
    else:
        neutral["suffix"] = "not a chat field: ignored"
    response = httpx.post(f"{relay.url}{path}", json={"model": "echo", **PATHS[path], **neutral})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("stream", [False, True])
def test_echo_stops_at_a_stop_string(relay: Relay, stream: bool) -> None:
    client = relay.openai()
    reply = client.chat.completions.create(model="echo", messages=CHAT, stop=["four", "zzz"], stream=stream)
    if stream:
        chunks = [c for c in reply if c.choices]
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        finish = chunks[-1].choices[0].finish_reason
    else:
        text, finish = reply.choices[0].message.content, reply.choices[0].finish_reason
    assert (text, finish) == ("one two three ", "stop")


@pytest.fixture(scope="module")
def tiny(relay: Relay, tiny_chat_ref: str) -> Iterator[str]:
    """The tiny chat model on the transformers runtime (context: 512 tokens)."""
    from tests_support import model_doc

    runtime = {"engine": "transformers", "params": {"maxTokens": 64}}
    artifact = {"uri": "engram://models/tiny-chat"}
    doc = model_doc("probe-tiny", artifact=artifact, runtime=runtime, resources={"cpus": 0.3})
    status = relay.apply(doc)
    assert status["models"]["probe-tiny"]["status"] == "ready", status["models"]["probe-tiny"]
    yield "probe-tiny"
    relay.delete("Model", "probe-tiny")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "word " * 600}]}, "messages"),
        ("/v1/completions", {"prompt": "word " * 600}, "prompt"),
        ("/v1/completions", {"prompt": "lorem ipsum " * 80_000}, "prompt"),  # refused by its length alone
    ],
)
def test_a_prompt_past_the_context_is_context_length_exceeded(tiny: str, relay: Relay, path: str, body: dict,
                                                               param: str) -> None:  # fmt: skip
    response = httpx.post(f"{relay.url}{path}", json={"model": tiny, "max_tokens": 4, **body}, timeout=60)
    error = assert_openai_error(response, 400, code="context_length_exceeded", param=param)
    assert "maximum context length is 512 tokens" in error["message"]


def test_embeddings_of_a_generating_model_are_a_bad_request(tiny: str, relay: Relay) -> None:
    response = httpx.post(f"{relay.url}/v1/embeddings", json={"model": tiny, "input": "x"}, timeout=60)
    assert_openai_error(response, 400, code="bad_request", param="model")


def test_a_completion_naming_no_max_tokens_gets_openais_16_within_the_models_cap(relay: Relay) -> None:
    """On a Model whose ``maxTokens`` is below 16, a completion naming no ``max_tokens`` was refused
    for "max_tokens: 16", a field the client never sent; ``"max_tokens": null`` ran to the model's cap
    instead of OpenAI's 16. Both get 16 within the model's cap now; one the client names is checked."""
    from tests_support import model_doc

    words = " ".join(f"w{i}" for i in range(40))
    for name, cap in (("echo-capped", 8), ("echo-wide", 64)):
        relay.apply(model_doc(name, runtime={"engine": "echo", "params": {"maxTokens": cap}}))
    try:
        for doc in ({}, {"max_tokens": None}):
            capped = httpx.post(f"{relay.url}/v1/completions", json={"model": "echo-capped", "prompt": words, **doc})
            assert capped.status_code == 200, capped.text
            assert capped.json()["usage"]["completion_tokens"] == 8
            wide = httpx.post(f"{relay.url}/v1/completions", json={"model": "echo-wide", "prompt": words, **doc})
            assert wide.status_code == 200 and wide.json()["usage"]["completion_tokens"] == 16, wide.text
        named = httpx.post(f"{relay.url}/v1/completions",
                           json={"model": "echo-capped", "prompt": words, "max_tokens": 9})  # fmt: skip
        assert_openai_error(named, 422, param="max_tokens")
    finally:
        relay.delete("Model", "echo-capped")
        relay.delete("Model", "echo-wide")
