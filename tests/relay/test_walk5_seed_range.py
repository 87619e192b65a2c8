"""A ``seed`` is a 64-bit integer, as OpenAI and vLLM take it.

Any integer was accepted: ``"seed": 18446744073709551616`` (or ``1e29`` written out) with a
temperature reached the transformers runtime, whose ``torch.Generator.manual_seed`` overflowed, and
the client got a 500 ``internal_error`` (vLLM's engine gets the same seed). It is now a 422 naming
``seed``, which the openai client raises as ``UnprocessableEntityError``; the ends of the range pass.

Likewise a ``response_format`` of a type neither OpenAI nor vLLM knows (``xml``), or ``json_schema``
without its schema, and ``top_logprobs`` without ``logprobs: true``, went to the model: each is
now a 422 naming the field, as OpenAI and vLLM refuse them.

The gateway's app (not started: no Ray) with an Adapter to a local upstream, and the openai client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from relay_support import Upstream, UpstreamServer, adapter_app


@pytest.fixture()
def upstream() -> Iterator[Upstream]:
    with UpstreamServer(Upstream("up")) as up:
        yield up


@pytest.fixture()
def client(tmp_path: Path, upstream: Upstream) -> Any:
    with adapter_app(tmp_path, {"up": {"baseUrl": upstream.url, "models": ["m"]}}) as http:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="k", http_client=http, max_retries=0)


@pytest.mark.parametrize("seed", [2**64, 10**29, -(2**63) - 1])
def test_a_seed_past_64_bits_is_a_422_naming_it(client: Any, upstream: Upstream, seed: int) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as chat:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], seed=seed,
                                       temperature=0.7)  # fmt: skip
    with pytest.raises(openai.UnprocessableEntityError) as completion:
        client.completions.create(model="m", prompt="hi", seed=seed)
    for refused in (chat.value, completion.value):
        assert refused.body["param"] == "seed" and refused.body["type"] == "invalid_request_error", refused.body
    assert upstream.bodies == []  # refused at the edge


@pytest.mark.parametrize("seed", [2**63 - 1, -(2**63), 0])
def test_a_64_bit_seed_passes(client: Any, upstream: Upstream, seed: int) -> None:
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], seed=seed)
    assert answer.choices[0].message.content == "up says hi" and upstream.bodies[-1]["seed"] == seed


@pytest.mark.parametrize(("fields", "param", "says"), [
    ({"response_format": {"type": "xml"}}, "response_format", "type 'xml': use one of text, json_object, json_schema"),
    ({"response_format": {}}, "response_format", "type missing"),
    ({"response_format": {"type": "json_schema"}}, "response_format", "json_schema: type json_schema needs"),
    ({"top_logprobs": 3}, "top_logprobs", "needs logprobs: true"),
    ({"top_logprobs": 3, "logprobs": False}, "top_logprobs", "needs logprobs: true"),
])  # fmt: skip
def test_values_openai_refuses_are_a_422_naming_the_field(client: Any, upstream: Upstream, fields: dict,
                                                          param: str, says: str) -> None:  # fmt: skip
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], **fields)
    assert refused.value.body["param"] == param and says in refused.value.body["message"], refused.value.body
    assert upstream.bodies == []


@pytest.mark.parametrize("fields", [
    {"response_format": {"type": "text"}}, {"response_format": {"type": "json_object"}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
    {"top_logprobs": 2, "logprobs": True}, {"top_logprobs": 0},
])  # fmt: skip
def test_the_values_openai_takes_pass(client: Any, upstream: Upstream, fields: dict) -> None:
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], **fields)
    assert {k: upstream.bodies[-1][k] for k in fields} == fields
