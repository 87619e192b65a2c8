"""An Adapter's credential as the secret store holds it: ``echo KEY > file`` (or a pasted value) ends it
with a line break, and every request through the Adapter was a 500 (aiohttp refuses a header with a
control character: "Forbidden control character detected in headers"). Whitespace around a secret is
no part of it; a line break inside one is a 502 ``upstream_error`` naming ``spec.auth.secretRef``,
without the secret.

The gateway's app (not started: no Ray), an Adapter to a local upstream, the openai client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from relay_support import Upstream, UpstreamServer
from starlette.testclient import TestClient


@pytest.fixture()
def upstream() -> Iterator[Upstream]:
    with UpstreamServer(Upstream("up")) as up:
        yield up


def _client(tmp_path: Path, upstream: Upstream, secret: str) -> Any:
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._edge import EdgeSeam
    from mnemos.relay._gateway import Gateway
    from mnemos.relay.ingress import create_app
    from mnemos.soul.secrets import secret_store

    settings = load_settings(engram={"uri": str(tmp_path / "engram")}, relay={"auth": False})
    secret_store("file", settings).set("llm", "KEY", secret)
    engram = Engram(str(tmp_path / "engram"))
    gateway = Gateway(settings, engram, None)
    adapter = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "up"},
               "spec": {"baseUrl": upstream.url, "models": ["m"], "retries": 0,
                        "auth": {"secretRef": {"name": "llm", "key": "KEY"}}}}  # fmt: skip
    gateway.apply({"version": 1, "models": {}, "adapters": {"up": adapter}})
    return TestClient(create_app(gateway, EdgeSeam(settings, engram)))


@pytest.mark.parametrize("secret", ["sk-walk6-KEY-0123\n", "  sk-walk6-KEY-0123\r\n", "\tsk-walk6-KEY-0123 "])
def test_whitespace_around_a_secret_is_no_part_of_it(tmp_path: Path, upstream: Upstream, secret: str) -> None:
    with _client(tmp_path, upstream, secret) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="k", http_client=http, max_retries=0)
        answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "up says hi"
    assert upstream.requests[-1]["authorization"] == "Bearer sk-walk6-KEY-0123"


def test_a_line_break_inside_a_secret_is_a_502_naming_the_secret_ref(tmp_path: Path, upstream: Upstream) -> None:
    with _client(tmp_path, upstream, "sk-walk6\nKEY-0123") as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="k", http_client=http, max_retries=0)
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 502, failed.value
    body = failed.value.body
    assert body["code"] == "upstream_error" and body["param"] == "spec.auth.secretRef", body
    assert "llm/KEY" in body["message"] and "sk-walk6" not in body["message"] and upstream.requests == []
