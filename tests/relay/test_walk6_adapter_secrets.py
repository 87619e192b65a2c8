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
from relay_support import Upstream, UpstreamServer, adapter_app


@pytest.fixture()
def upstream() -> Iterator[Upstream]:
    with UpstreamServer(Upstream("up")) as up:
        yield up


def _client(tmp_path: Path, upstream: Upstream, secret: str) -> Any:
    spec = {"baseUrl": upstream.url, "models": ["m"], "retries": 0,
            "auth": {"secretRef": {"name": "llm", "key": "KEY"}}}  # fmt: skip
    return adapter_app(tmp_path, {"up": spec}, secrets={("llm", "KEY"): secret})


def test_a_line_break_inside_a_secret_is_a_502_naming_the_secret_ref(tmp_path: Path, upstream: Upstream) -> None:
    with _client(tmp_path, upstream, "sk-walk6\nKEY-0123") as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="k", http_client=http, max_retries=0)
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 502, failed.value
    body = failed.value.body
    assert body["code"] == "upstream_error" and body["param"] == "spec.auth.secretRef", body
    assert "llm/KEY" in body["message"] and "sk-walk6" not in body["message"] and upstream.requests == []
