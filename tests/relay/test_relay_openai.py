"""The gateway's OpenAI API with the official ``openai`` client, on the ``echo`` runtime."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import struct
from typing import Any

import httpx
import openai
import pytest
from relay_support import Relay, assert_openai_error, published_stream_check, sse_data, wait_until

CHAT = [{"role": "system", "content": "ignored by echo"}, {"role": "user", "content": "the quick brown fox"}]


def test_lists_models(relay: Relay) -> None:
    models = relay.openai().models.list()
    ids = [m.id for m in models.data]
    assert "echo" in ids
    card = next(m for m in models.data if m.id == "echo")
    assert card.owned_by == "mnemos"
    assert relay.openai().models.retrieve("echo").id == "echo"


def test_chat_completion(relay: Relay) -> None:
    reply = relay.openai().chat.completions.create(model="echo", messages=CHAT)
    assert reply.object == "chat.completion"
    assert reply.model == "echo"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "the quick brown fox"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 4 and reply.usage.total_tokens == 8


def test_chat_completion_respects_max_tokens(relay: Relay) -> None:
    reply = relay.openai().chat.completions.create(model="echo", messages=CHAT, max_tokens=2)
    assert reply.choices[0].message.content == "the quick"
    assert reply.choices[0].finish_reason == "length"


def test_streamed_chat_completion(relay: Relay) -> None:
    stream = relay.openai().chat.completions.create(
        model="echo", messages=CHAT, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "the quick brown fox"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert len({c.id for c in chunks}) == 1


def test_completions(relay: Relay) -> None:
    client = relay.openai()
    reply = client.completions.create(model="echo", prompt="one two three", max_tokens=2)
    assert reply.object == "text_completion"
    assert reply.choices[0].text == "one two"
    assert reply.choices[0].finish_reason == "length"
    echoed = client.completions.create(model="echo", prompt="a b", echo=True)
    assert echoed.choices[0].text == "a ba b"
    streamed = "".join(c.choices[0].text for c in client.completions.create(model="echo", prompt="x y z", stream=True))
    assert streamed == "x y z"


def test_sixteen_concurrent_chats_all_succeed(relay: Relay) -> None:
    client = relay.openai()

    def ask(i: int) -> str:
        reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": f"request {i}"}])
        return reply.choices[0].message.content or ""

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))
    assert answers == [f"request {i}" for i in range(16)]


def test_echo_embeddings_float_and_base64(relay: Relay) -> None:
    client = relay.openai()
    floats = client.embeddings.create(model="echo", input=["ab cd", "x"], encoding_format="float")
    assert [d.embedding for d in floats.data] == [[5.0, 2.0], [1.0, 1.0]]
    # The client asks for base64 by default and decodes it: same numbers.
    default = client.embeddings.create(model="echo", input="ab cd")
    assert default.data[0].embedding == [5.0, 2.0]
    raw = httpx.post(
        f"{relay.url}/v1/embeddings", json={"model": "echo", "input": "ab cd", "encoding_format": "base64"}
    )
    packed = base64.b64decode(raw.json()["data"][0]["embedding"])
    assert struct.unpack("<2f", packed) == (5.0, 2.0)


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}, 404, "model_not_found", "model"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}, 422, "validation_error",
         "max_tokens"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "temperature": 7}, 422, "validation_error",
         "temperature"),
        ({"model": "echo", "messages": []}, 422, "validation_error", "messages"),
        ({"model": "echo", "messages": [{"role": "wizard", "content": "x"}]}, 422, "validation_error",
         "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x"}]}, 422, "validation_error", "model"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**6}, 422,
         "validation_error", "max_tokens"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 2}, 422, "validation_error", "n"),
        # OpenAI's rules for messages and tools (these were served, or refused as a wrong type)
        ({"model": "echo", "messages": [{"role": "user"}]}, 422, "validation_error", "messages[0]"),
        ({"model": "echo", "messages": [{"role": "tool", "content": "42"}]}, 422, "validation_error", "messages[0]"),
        ({"model": "echo", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "https://x/y.png"}}]}]}, 422, "validation_error", "messages[0].content"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "tools": [
            {"type": "function", "function": {"name": "bad name!"}}]}, 422, "validation_error", "tools"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "tools": [
            {"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]}, 422,
         "validation_error", "tools"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "tool_choice": "bogus"}, 422,
         "validation_error", "tool_choice"),
        # schemas that match no JSON value (vLLM's structured output failed on them: a 500): 400, as vLLM
        # and OpenAI answer a schema they cannot use
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#"}}}}, 400, "bad_request",
         "response_format"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"allOf": [{"$ref": "#"}]}}}}, 400,
         "bad_request", "response_format"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "structured_outputs": {"json": {
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}}}, 400,
         "bad_request", "structured_outputs"),
        # schemas that are not JSON Schema (a tool's parameters went to the model unchecked with tool_choice auto)
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "wat"}}}]}, 400, "bad_request",
         "tools"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "tools": [
            {"type": "function", "function": {"name": "f", "parameters": "{}"}}]}, 422, "validation_error", "tools"),
        ({"model": "echo", "messages": [{"role": "user", "content": "x"}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"required": "a"}}}}, 400, "bad_request",
         "response_format"),
    ],
)  # fmt: skip
def test_chat_errors_have_openai_shape(relay: Relay, body: dict, status: int, code: str, param: str) -> None:
    response = httpx.post(f"{relay.url}/v1/chat/completions", json=body)
    assert_openai_error(response, status, code=code, param=param)


@pytest.mark.parametrize("raw", [b"{bad json", b"", b"[1, 2", b"\xff\xfe"])
def test_malformed_json_is_400(relay: Relay, raw: bytes) -> None:
    response = httpx.post(f"{relay.url}/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    if raw:
        assert_openai_error(response, 400, code="bad_request")
    else:  # an empty body is a missing body: a field error
        assert_openai_error(response, 422, code="validation_error")


@pytest.mark.parametrize(("body", "message"), [
    ([1, 2], 'the request body must be a JSON object ({"model": …}), not an array'),
    ("hello", 'the request body must be a JSON object ({"model": …}), not a string'),
    (None, "a JSON request body is required"),  # `null`: no body
])  # fmt: skip
def test_a_body_that_is_not_an_object_is_422_saying_so(relay: Relay, body: object, message: str) -> None:
    response = httpx.post(f"{relay.url}/v1/chat/completions", json=body)
    assert assert_openai_error(response, 422, code="validation_error")["message"] == message


def test_a_schema_that_loops_only_through_refs_is_found_and_recursion_with_a_base_case_is_not() -> None:
    from mnemos.relay.openai_schema import looping_ref

    tree = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}}
    assert looping_ref(tree) is None  # a tree: each level consumes structure
    assert looping_ref({"anyOf": [{"$ref": "#"}, {"type": "string"}]}) is None  # another branch ends it
    assert looping_ref({"$ref": "#/$defs/missing"}) is None and looping_ref({"$ref": "https://x/y"}) is None
    assert looping_ref({"properties": {"x": {"$ref": "#/$defs/a~1b"}}, "$defs": {"a/b": {"$ref": "#/$defs/a~1b"}}}) \
        == "#/$defs/a~1b"  # fmt: skip
    n = 30_000  # a long chain (a 1 MiB body's worth) is walked once: linear, not quadratic
    chain = {"$ref": "#/$defs/d0", "$defs": {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(n)}}
    chain["$defs"][f"d{n}"] = {"type": "string"}
    assert looping_ref(chain) is None
    chain["$defs"][f"d{n}"] = {"allOf": [{"$ref": "#/$defs/d0"}]}
    assert looping_ref(chain) == "#/$defs/d0"


def test_a_schema_is_checked_against_its_metaschema_naming_where_it_breaks(relay: Relay) -> None:
    """OpenAI refuses a tool whose ``parameters`` is not a JSON Schema; vLLM took one with
    ``tool_choice: auto`` and rendered it into the prompt. The check names the keyword, reads the
    draft ``$schema`` names, leaves ECMA regexes alone, and skips schemas too large to check cheaply
    (vLLM still sees them) instead of holding the event loop or overflowing the stack."""
    def ask(parameters: Any) -> httpx.Response:
        tools = [{"type": "function", "function": {"name": "f", "parameters": parameters}}]
        return httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "echo", "messages": CHAT, "tools": tools})

    bad = {"type": "object", "properties": {"unit": {"type": "string", "minLength": -1}}}
    message = assert_openai_error(ask(bad), 400, code="bad_request", param="tools")["message"]
    assert message.startswith("tools: [0].function.parameters.properties.unit.minLength: -1 is less than"), message
    assert "not a valid JSON Schema" in message
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
              "properties": {"n": {"type": "number", "maximum": 3, "exclusiveMaximum": True}}}  # fmt: skip
    ecma = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^\\p{L}+$"}}}
    modern = {"type": "object", "$defs": {"p": {"type": "string"}}, "properties": {"x": {"$ref": "#/$defs/p"}},
              "prefixItems": [{"type": "string"}], "unevaluatedProperties": False}  # fmt: skip

    def passed(parameters: Any) -> bool:
        """Past the schema check: refused after it by the echo runtime, which serves no tools."""
        answer = ask(parameters)
        return answer.status_code == 422 and "does not support it" in answer.json()["error"]["message"]

    for fine in (draft4, ecma, modern, {"type": "object", "properties": {}}):
        assert passed(fine), fine
    assert ask({**draft4, "$schema": "http://json-schema.org/draft-07/schema#"}).status_code == 400  # draft 7 rules
    for odd in ([], 5, {"a": 1}):  # a $schema that is no URI: refused, naming it (jsonschema's lookup failed: a 500)
        message = assert_openai_error(ask({"$schema": odd, "type": "object"}), 400, param="tools")["message"]
        assert "['$schema']" in message, message
    # a schema jsonschema's own check fails on (TypeError inside draft 3's metaschema): vLLM's to judge, not a 500
    assert passed({"$schema": "http://json-schema.org/draft-03/schema#", "disallow": [{"type": 1}]})
    wide = {"type": "object", "properties": {f"p{i}": {"type": "wat"} for i in range(300)}}
    assert passed(wide)  # past the cap: vLLM's to judge
    deep: dict[str, Any] = {"type": "wat"}
    for _ in range(25):
        deep = {"type": "object", "properties": {"a": deep}}
    assert passed(deep)  # 51 levels of JSON (the body's cap is 64): past the check's, never a RecursionError


def test_other_bad_input_is_4xx_never_500(relay: Relay) -> None:
    url = relay.url
    # token ids (OpenAI takes them; LangChain's embeddings send them by default): refused, naming the fix
    for tokens in ([1, 2], [[1, 2], [3]], 7):
        refused = httpx.post(f"{url}/v1/embeddings", json={"model": "echo", "input": tokens})
        assert "check_embedding_ctx_length=False" in assert_openai_error(refused, 422, param="input")["message"]
    for tokens in ([1, 2], [[1, 2]]):
        refused = httpx.post(f"{url}/v1/completions", json={"model": "echo", "prompt": tokens})
        assert "send the prompt as text" in assert_openai_error(refused, 422, param="prompt")["message"]
    assert_openai_error(httpx.post(f"{url}/v1/embeddings", json={"model": "echo", "input": [True]}), 422,
                        param="input[0]")  # fmt: skip
    assert_openai_error(httpx.post(f"{url}/v1/embeddings", json={"model": "echo", "input": []}), 422, param="input")
    for empty in ("", ["a", ""]):  # no text, no embedding (and no charge for one)
        refused = httpx.post(f"{url}/v1/embeddings", json={"model": "echo", "input": empty})
        assert "an empty text has no embedding" in assert_openai_error(refused, 422, param="input")["message"]
    assert_openai_error(httpx.post(f"{url}/v1/completions", json={"model": "echo", "prompt": ["a", "b"]}), 422,
                        param="prompt")  # fmt: skip
    # best_of ranks server-side candidates, which no runtime here does: refused, not silently ignored
    refused = httpx.post(f"{url}/v1/completions", json={"model": "echo", "prompt": "a", "best_of": 3})
    assert "ask for n choices" in assert_openai_error(refused, 422, param="best_of")["message"]
    assert httpx.post(f"{url}/v1/completions", json={"model": "echo", "prompt": "a", "best_of": 1}).status_code == 200
    response = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "x"}]},
        headers={"X-Mnemos-Priority": "urgent"},
    )
    assert_openai_error(response, 422, param="X-Mnemos-Priority")
    assert_openai_error(httpx.get(f"{url}/v1/nothing-here"), 404, code="not_found")
    assert_openai_error(httpx.get(f"{url}/v1/chat/completions"), 405, code="method_not_allowed")
    assert_openai_error(httpx.get(f"{url}/v1/models/ghost"), 404, code="model_not_found")
    big = b'{"model": "echo", "prompt": "' + b"a" * (relay.settings.relay.max_body_bytes + 1) + b'"}'
    response = httpx.post(f"{url}/v1/completions", content=big, headers={"content-type": "application/json"})
    assert_openai_error(response, 413, code="payload_too_large")


STRICT_TYPES = [
    ("/v1/chat/completions", "max_tokens", "5", "an integer", "a string"),
    ("/v1/chat/completions", "max_tokens", True, "an integer", "a boolean"),
    ("/v1/chat/completions", "max_tokens", 5.5, "an integer", "a decimal number"),
    ("/v1/chat/completions", "n", "2", "an integer", "a string"),
    ("/v1/chat/completions", "temperature", "0.5", "a number", "a string"),
    ("/v1/chat/completions", "stream", "yes", "a boolean", "a string"),
    ("/v1/chat/completions", "logprobs", 1, "a boolean", "an integer"),
    ("/v1/completions", "max_tokens", "5", "an integer", "a string"),
    ("/v1/completions", "echo", "yes", "a boolean", "a string"),
    ("/v1/completions", "top_p", False, "a number", "a boolean"),
    ("/v1/embeddings", "dimensions", "2", "an integer", "a string"),
]
_BODIES = {"/v1/chat/completions": {"model": "echo", "messages": CHAT},
           "/v1/completions": {"model": "echo", "prompt": "a b"},
           "/v1/embeddings": {"model": "echo", "input": "a b"}}  # fmt: skip


@pytest.mark.parametrize(("path", "field", "value", "expected", "got"), STRICT_TYPES)
def test_numbers_and_booleans_must_be_json_numbers_and_booleans(relay: Relay, path: str, field: str, value: object,
                                                                expected: str, got: str) -> None:  # fmt: skip
    """``"max_tokens": "5"`` or ``true``, ``"temperature": "0.5"``, ``"stream": "yes"`` were coerced
    and served; OpenAI refuses them, naming the field and both types."""
    refused = httpx.post(f"{relay.url}{path}", json={**_BODIES[path], field: value})
    error = assert_openai_error(refused, 422, code="validation_error", param=field)
    assert error["message"] == f"Invalid type for '{field}': expected {expected}, but got {got} instead."


def test_integers_are_numbers_and_vllm_fields_pass_untyped(relay: Relay) -> None:
    """An integer is a number (``temperature: 1``) and a number without a fraction an integer
    (``max_tokens: 2.0``: JSON Schema's integer, as ``/openapi.json`` publishes it); vLLM's sampling
    fields are not the gateway's to type (an echo model ignores them, a vLLM model validates them)."""
    body = {**_BODIES["/v1/chat/completions"], "temperature": 1, "top_p": 1, "max_tokens": 2.0, "top_k": "many",
            "stream_options": None, "seed": 3}  # fmt: skip
    served = httpx.post(f"{relay.url}/v1/chat/completions", json=body)
    assert served.status_code == 200, served.text
    assert served.json()["choices"][0]["message"]["content"] == "the quick"


def test_a_bad_tool_call_in_messages_is_named_by_its_json_path(relay: Relay) -> None:
    """A tool call of an earlier message was an untyped object: vLLM refused a bad one naming its
    own classes (``param: 0.ChatCompletionMessageFunctionToolCallParam.id``)."""
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}]  # fmt: skip
    served = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "echo", "messages": messages})
    assert served.status_code == 200, served.text
    for bad, param in [({**call, "id": 5}, "messages[1].tool_calls[0].id"),
                       ({**call, "function": {"name": "f"}}, "messages[1].tool_calls[0].function.arguments"),
                       ({**call, "type": "bogus"}, "messages[1].tool_calls[0].type")]:  # fmt: skip
        messages[1]["tool_calls"] = [bad]
        refused = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "echo", "messages": messages})
        assert_openai_error(refused, 422, code="validation_error", param=param)


def test_head_is_get_without_the_body(relay: Relay) -> None:
    """``HEAD /v1/models`` and ``HEAD /healthz`` were 405: HEAD answers what GET answers, headers
    included, without the body; a path without GET still answers 405 naming its methods."""
    for path in ("/v1/models", "/v1/models/echo", "/healthz", "/readyz", "/openapi.json"):
        got, head = httpx.get(f"{relay.url}{path}"), httpx.head(f"{relay.url}{path}")
        assert head.status_code == got.status_code == 200, (path, head.status_code)
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-length"] == got.headers["content-length"]
    missing = httpx.head(f"{relay.url}/v1/models/ghost")
    assert missing.status_code == 404 and missing.content == b""
    post_only = httpx.head(f"{relay.url}/v1/chat/completions")
    assert post_only.status_code == 405 and post_only.headers["allow"] == "POST"
    # A stream answers its headers and ends: no event stream stays open (more than relay.maxEventStreams).
    for _ in range(relay.settings.relay.max_event_streams + 1):
        events = httpx.head(f"{relay.url}/v1/events", timeout=10)
        assert events.status_code == 200 and events.headers["content-type"].startswith("text/event-stream")


def test_head_is_authenticated_as_get(governed: Relay) -> None:
    from metering_support import api_key, unique

    assert_openai_error(httpx.get(f"{governed.url}/v1/models"), 401, type_="authentication_error")
    refused = httpx.head(f"{governed.url}/v1/models")
    assert refused.status_code == 401 and refused.content == b""
    assert refused.headers["www-authenticate"].startswith("Bearer")
    headers = {"Authorization": f"Bearer {api_key(governed, unique('head'))}"}
    assert httpx.head(f"{governed.url}/v1/models", headers=headers).status_code == 200


def test_bodies_past_the_parsers_reach_for_are_400_on_every_openai_route(relay: Relay) -> None:
    """FastAPI's parser lets through a lone surrogate (as an escape or as UTF-8's ED A0 80) and a
    body nested hundreds deep; a vLLM model then failed with a 500 (a tokenizer's TypeError, a
    PicklingError on the way to the replica). The gateway's edge refuses both, naming why; a
    surrogate pair (an emoji) and a usual body pass."""
    headers = {"content-type": "application/json"}
    chat = '{"model":"echo","messages":[{"role":"user","content":"%s"}]}'
    for path, body in [
        ("/v1/chat/completions", (chat % "\\ud800").encode()),
        ("/v1/chat/completions", (chat % "x").encode().replace(b'"x"', b'"\xed\xa0\x80"')),
        ("/v1/completions", b'{"model":"echo","prompt":"\\udfff"}'),
        ("/v1/embeddings", b'{"model":"echo","input":["ok","\\ud83d"]}'),
    ]:
        refused = httpx.post(f"{relay.url}{path}", content=body, headers=headers)
        assert_openai_error(refused, 400, code="bad_request")
        assert "unpaired surrogate" in refused.json()["error"]["message"], (path, body)
    deep = {"type": "object", "x": json.loads("[" * 100 + "]" * 100)}
    tools = [{"type": "function", "function": {"name": "f", "parameters": deep}}]
    refused = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "echo", "messages": CHAT, "tools": tools})
    assert_openai_error(refused, 400, code="bad_request")
    assert "64 levels" in refused.json()["error"]["message"]
    smile = [{"role": "user", "content": "hi \U0001F600"}]  # sent as the pair "\\ud83d\\ude00"
    echoed = relay.openai().chat.completions.create(model="echo", messages=smile)
    assert echoed.choices[0].message.content == "hi \U0001F600"


def test_a_body_the_parser_cannot_read_is_refused_saying_why(relay: Relay) -> None:
    """A gzip body, bytes that are not UTF-8 and a 5,000-digit number all got FastAPI's "There was
    an error parsing the body" with no hint; a compressed body is now a 415 naming the header."""
    import gzip

    chat = json.dumps({"model": "echo", "messages": CHAT}).encode()
    zipped = httpx.post(f"{relay.url}/v1/chat/completions", content=gzip.compress(chat),
                        headers={"content-type": "application/json", "content-encoding": "gzip"})  # fmt: skip
    error = assert_openai_error(zipped, 415, code="unsupported_media_type", param="content-encoding")
    assert "uncompressed" in error["message"]
    long_seed = chat[:-1] + b', "seed": ' + b"9" * 5000 + b"}"
    for body, said in ((gzip.compress(chat), "not UTF-8 text (byte 0x8b at offset 1)"),
                       (chat.replace(b'"echo"', b'"ech\xff"'), "not UTF-8 text"),
                       (long_seed, "integer of 5000 digits is too long")):  # fmt: skip
        refused = httpx.post(f"{relay.url}/v1/chat/completions", content=body,
                             headers={"content-type": "application/json"})  # fmt: skip
        assert said in assert_openai_error(refused, 400, code="bad_request")["message"], refused.text
    plain = httpx.post(f"{relay.url}/v1/chat/completions", content=chat,
                       headers={"content-type": "application/json", "content-encoding": "identity"})  # fmt: skip
    assert plain.status_code == 200, plain.text


def test_a_body_not_sent_as_json_is_415_naming_the_header(relay: Relay) -> None:
    """``curl -d`` sends ``application/x-www-form-urlencoded``: FastAPI then refused the body as
    "Input should be a valid dictionary", which names neither the header nor the fix."""
    body = b'{"model":"echo","messages":[{"role":"user","content":"x"}]}'
    for headers in ({"content-type": "application/x-www-form-urlencoded"}, {"content-type": "text/plain"}, {}):
        refused = httpx.post(f"{relay.url}/v1/chat/completions", content=body, headers=headers)
        assert_openai_error(refused, 415, code="unsupported_media_type", param="content-type")
        assert "Content-Type: application/json" in refused.json()["error"]["message"]
    sent = httpx.post(f"{relay.url}/v1/chat/completions", content=body,
                      headers={"content-type": "application/json; charset=utf-8"})  # fmt: skip
    assert sent.status_code == 200, sent.text


def test_values_that_ask_for_no_feature_are_served_by_any_runtime(relay: Relay) -> None:
    """``response_format: {type: text}`` and ``tool_choice: none`` ask for the default (LangChain
    sends them); the echo runtime served them as refused features (422)."""
    reply = relay.openai().chat.completions.create(model="echo", messages=CHAT, response_format={"type": "text"},
                                                   tool_choice="none")  # fmt: skip
    assert reply.choices[0].message.content == "the quick brown fox"
    json_mode = {"model": "echo", "messages": CHAT, "response_format": {"type": "json_object"}}
    refused = httpx.post(f"{relay.url}/v1/chat/completions", json=json_mode)
    assert_openai_error(refused, 422, param="response_format")


def test_null_is_the_default_where_openai_takes_null(relay: Relay) -> None:
    """OpenAI's spec makes ``n``, ``stream``, ``echo`` and ``include_usage`` nullable (null: the
    default) and clients send them so; they were 422 "expected an integer, but got null"."""
    nulls = {"n": None, "stream": None, "stream_options": {"include_usage": None}}
    chat = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "echo", "messages": CHAT, **nulls})
    assert chat.status_code == 200 and len(chat.json()["choices"]) == 1, chat.text
    completion = httpx.post(f"{relay.url}/v1/completions", json={"model": "echo", "prompt": "a", "echo": None,
                                                                 "n": None, "stream": None})  # fmt: skip
    assert completion.status_code == 200 and completion.json()["object"] == "text_completion", completion.text
    published = httpx.get(f"{relay.url}/openapi.json").json()["components"]["schemas"]["ChatCompletionRequest"]
    assert {"type": "null"} in published["properties"]["n"]["anyOf"]
    assert_openai_error(httpx.post(f"{relay.url}/v1/chat/completions",
                                   json={"model": "echo", "messages": CHAT, "n": 0}), 422, param="n")  # fmt: skip


def test_a_trailing_slash_is_not_redirected_to_the_clients_host(relay: Relay) -> None:
    """Starlette answered ``POST /v1/chat/completions/`` with a 307 to a URL built from the
    request's ``Host`` header (``http://evil.example/…``)."""
    response = httpx.post(f"{relay.url}/v1/chat/completions/", json={"model": "echo", "messages": CHAT},
                          headers={"Host": "evil.example"})  # fmt: skip
    assert response.status_code == 404 and "location" not in response.headers, response.headers


def test_openai_client_raises_typed_errors(relay: Relay) -> None:
    client = relay.openai()
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="ghost", messages=CHAT)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError) as invalid:
        client.chat.completions.create(model="echo", messages=CHAT, max_tokens=-1)
    assert invalid.value.param == "max_tokens"


def test_batch_priority_header_is_accepted(relay: Relay) -> None:
    reply = relay.openai().chat.completions.create(
        model="echo", messages=CHAT, extra_headers={"X-Mnemos-Priority": "batch"}
    )
    assert reply.choices[0].message.content == "the quick brown fox"


def test_health_readiness_and_openapi(relay: Relay) -> None:
    assert httpx.get(f"{relay.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{relay.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"]["echo"] == "ready"
    spec = httpx.get(f"{relay.url}/openapi.json").json()
    for path in ("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/healthz", "/readyz"):
        assert path in spec["paths"], path
    schema = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("ChatCompletionRequest")


def test_streamed_answers_are_the_event_stream_the_openapi_document_publishes(relay: Relay) -> None:
    """``stream: true`` answers ``text/event-stream``, which ``/openapi.json`` documents beside the
    JSON answer: each event's ``data`` a chunk of the route's model (or an error), then ``[DONE]``.
    It documented only ``application/json``, which no streamed answer is."""
    streams = {"/v1/chat/completions": {"messages": CHAT, "stream_options": {"include_usage": True}},
               "/v1/completions": {"prompt": "x y z", "stream_options": {"include_usage": True}}}  # fmt: skip
    seen = {}
    for path, body in streams.items():
        check = published_stream_check(relay.url, path)
        with httpx.stream("POST", f"{relay.url}{path}", json={"model": "echo", "stream": True, **body},
                          timeout=30) as response:  # fmt: skip
            assert response.headers["content-type"].startswith("text/event-stream")
            seen[path] = sse_data(response)
        check(seen[path])
        assert any('"usage":{' in value for value in seen[path])
    with pytest.raises(AssertionError):  # the check reads each chunk: a completion's is no chat chunk
        published_stream_check(relay.url, "/v1/chat/completions")(seen["/v1/completions"])


def test_requests_are_recorded_in_lineage(relay: Relay) -> None:
    from mnemos.trace.lineage import events

    reply = relay.openai().chat.completions.create(model="echo", messages=CHAT)
    node = f"request:{reply.id}"
    found = wait_until(lambda: [e for e in events(relay.client.engram) if e["id"] == node], timeout=30)
    attrs = found[0]["attrs"]
    assert attrs["model"] == "echo" and attrs["generation"] == 1
    assert attrs["usage"] == {"prompt": 4, "completion": 4}
    assert found[0]["parents"] == ["model:echo@1"]
    assert "quick" not in str(found)  # no prompt or output text in lineage


def test_one_trace_from_gateway_to_runtime_and_metrics(relay: Relay) -> None:
    from mnemos.trace.lineage import events
    from mnemos.trace.telemetry import spans_for

    reply = relay.openai().chat.completions.create(model="echo", messages=CHAT)
    node = f"request:{reply.id}"
    found = wait_until(lambda: [e for e in events(relay.client.engram) if e["id"] == node], timeout=30)
    trace_id = found[0]["attrs"]["trace_id"]
    assert isinstance(trace_id, str) and len(trace_id) == 32
    spans = spans_for(trace_id, min_spans=2, timeout=20)
    names = {s["name"] for s in spans}
    assert {"relay.request", "neuron.generate"} <= names, names

    def echo_metrics() -> str | None:
        text = httpx.get(f"{relay.url}/metrics").text
        return text if 'mnemos_relay_requests_total{model="echo"' in text or 'model="echo"' in text else None

    assert "mnemos_relay_requests_total" in wait_until(echo_metrics, timeout=30)


_SCHEMA_KEYS = ("type", "properties", "items", "required", "enum", "$schema", "$ref", "$id", "id", "allOf",
                "anyOf", "not", "additionalProperties", "pattern", "minimum", "exclusiveMaximum", "minLength",
                "uniqueItems", "definitions", "$defs", "dependencies", "if", "contains", "extends", "disallow",
                "divisibleBy")  # fmt: skip
_DRAFTS = ("http://json-schema.org/draft-03/schema#", "http://json-schema.org/draft-04/schema#",
           "http://json-schema.org/draft-06/schema#", "http://json-schema.org/draft-07/schema#",
           "https://json-schema.org/draft/2020-12/schema", "urn:other")  # fmt: skip


def test_no_schema_a_client_sends_makes_the_check_fail_other_than_by_refusing_it() -> None:
    """Schemas built from JSON Schema's keywords of every draft, with values of every JSON type, as a
    tool's parameters, a response format and a structured output: the checks answer each with a
    refusal (400) or let it through, never with another exception (a 500). Found this way: a
    ``$schema`` that is not a string, and draft 3 keywords jsonschema itself fails on."""
    import pydantic
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from mnemos.relay.openai_schema import ChatCompletionRequest

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "object", "wat", "(", "#"]),
                        st.sampled_from(_DRAFTS))  # fmt: skip
    def nested(inner: Any) -> Any:
        return st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_SCHEMA_KEYS), inner, max_size=4)

    values = st.recursive(scalars, nested, max_leaves=12)
    schemas = st.dictionaries(st.sampled_from(_SCHEMA_KEYS), values, max_size=5)

    @settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(schemas)
    def check(schema: dict[str, Any]) -> None:
        for field in ({"tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]},
                      {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}},
                      {"structured_outputs": {"json": schema}}):  # fmt: skip
            try:
                ChatCompletionRequest.model_validate({"model": "m", "messages": CHAT, **field})
            except pydantic.ValidationError as exc:
                assert exc.errors()[0]["type"] in ("invalid_schema", "value_error"), exc

    check()


def test_a_client_whose_base_url_lacks_v1_is_told_so(relay: Relay) -> None:
    """``OpenAI(base_url="http://host:port")`` (no ``/v1``, a newcomer's first try) got a bare
    "Not Found"; the 404 now says where the route is and what ``base_url`` takes."""
    client = openai.OpenAI(base_url=relay.url, api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    message = missing.value.body["message"]
    assert "/chat/completions is served at /v1/chat/completions" in message and "base_url" in message, message
    with pytest.raises(openai.NotFoundError) as listed:
        client.models.list()
    assert "served at /v1/models" in listed.value.body["message"]
    other = httpx.get(f"{relay.url}/no-such-route", timeout=30)
    assert other.status_code == 404 and "base_url" not in other.text  # only the OpenAI routes get the hint
