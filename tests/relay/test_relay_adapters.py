"""Adapters: model names routed to OpenAI-compatible upstreams on 127.0.0.1, with retries and fallback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from relay_support import Relay, Upstream, UpstreamServer, assert_openai_error, free_port
from tests_support import until

ASK = [{"role": "user", "content": "hello"}]


def adapter_doc(name: str, base_url: str, models: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "genome.mnemos.dev/v1",
        "kind": "Adapter",
        "metadata": {"name": name},
        "spec": {
            "type": "http",
            "baseUrl": base_url,
            "models": models,
            "routes": [{"match": "/v1/chat/completions", "timeout": "10s"}],
            **spec,
        },  # fmt: skip
    }


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    with UpstreamServer(Upstream("a")) as a, UpstreamServer(Upstream("b")) as b:
        yield a, b


@pytest.fixture()
def routed(relay: Relay, upstreams: tuple[Upstream, Upstream]) -> Iterator[tuple[Upstream, Upstream]]:
    """Adapter ``up-a`` (model ``remote-chat``, key from the secret store) falling back to ``up-b``."""
    from mnemos.soul.secrets import secret_store

    a, b = upstreams
    a.reset()
    b.reset()
    secret_store("file", relay.settings).set("llm-keys", "UPSTREAM_A_KEY", "sk-a-test")
    relay.apply(
        adapter_doc("up-a", a.url, ["remote-chat"], upstreamModel="a-model", retries=2, fallback="up-b",
                    auth={"secretRef": {"name": "llm-keys", "key": "UPSTREAM_A_KEY"}}),
        adapter_doc("up-b", b.url, ["b-only"], upstreamModel="b-model", retries=0),
    )  # fmt: skip
    yield a, b
    relay.delete("Adapter", "up-a")
    relay.delete("Adapter", "up-b")


def test_adapter_serves_a_model_name_upstream(relay: Relay, routed: tuple[Upstream, Upstream]) -> None:
    a, _ = routed
    client = relay.openai()
    listed = {m.id: m.owned_by for m in client.models.list().data}
    assert listed["remote-chat"] == "up-a" and listed["b-only"] == "up-b"
    reply = client.chat.completions.create(model="remote-chat", messages=ASK)
    assert reply.choices[0].message.content == "a says hi"
    assert a.requests[-1] == {"path": "/v1/chat/completions", "model": "a-model", "authorization": "Bearer sk-a-test"}
    streamed = client.chat.completions.create(model="remote-chat", messages=ASK, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == "a says hi"  # (no usage chunk: not asked)
    asked = list(client.chat.completions.create(model="remote-chat", messages=ASK, stream=True,
                                                stream_options={"include_usage": True}))  # fmt: skip
    assert asked[-1].choices == [] and asked[-1].usage.completion_tokens == 3, asked[-1]
    assert "".join(c.choices[0].delta.content or "" for c in asked[:-1]) == "a says hi"
    # An upstream's own 4xx is the caller's: passed through, not retried, no fallback.
    count = len(a.requests)
    refused = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "remote-chat", "messages": ASK,
                                                                   "user": "refused"})  # fmt: skip
    assert_openai_error(refused, 400, code="refused", param="user")
    assert len(a.requests) == count + 1
    # An upstream that echoes its request in an error does not hand the adapter's credential out.
    echoed = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "remote-chat", "messages": ASK,
                                                                  "user": "echo"})  # fmt: skip
    error = assert_openai_error(echoed, 400, code="upstream_error", type_="upstream_error")
    assert "sk-a-test" not in echoed.text and "[redacted]" in error["message"], echoed.text
    # Paths the adapter does not route are refused.
    missing = httpx.post(f"{relay.url}/v1/embeddings", json={"model": "remote-chat", "input": "x"})
    assert_openai_error(missing, 404, param="model")


def test_adapter_retries_a_503(relay: Relay, routed: tuple[Upstream, Upstream]) -> None:
    a, b = routed
    a.fail_next = 2  # two 503s, then an answer: within retries=2
    reply = relay.openai().chat.completions.create(model="remote-chat", messages=ASK)
    assert reply.choices[0].message.content == "a says hi"
    assert len(a.requests) == 3 and not b.requests


def test_adapter_falls_back_to_the_second_upstream(relay: Relay, routed: tuple[Upstream, Upstream]) -> None:
    a, b = routed
    a.always_fail = True
    client = relay.openai()
    reply = client.chat.completions.create(model="remote-chat", messages=ASK)
    assert reply.choices[0].message.content == "b says hi"
    assert len(a.requests) == 3  # the first try and two retries
    assert b.requests[-1]["model"] == "b-model" and b.requests[-1]["authorization"] is None
    streamed = client.chat.completions.create(model="remote-chat", messages=ASK, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == "b says hi"
    b.always_fail = True
    failed = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "remote-chat", "messages": ASK})
    error = assert_openai_error(failed, 502, code="upstream_error", type_="server_error")
    assert "up-a" in error["message"] and "up-b" in error["message"]
    assert "sk-a-test" not in failed.text


def test_a_fallback_that_is_not_an_adapter_is_named_when_the_first_fails(
    relay: Relay, upstreams: tuple[Upstream, Upstream]
) -> None:
    """An Adapter whose ``fallback`` names no Adapter (a typo, or one deleted): when the first
    failed, the chain ended silently and the 502 read as if there had been no fallback at all."""
    a, _ = upstreams
    a.reset()
    relay.apply(adapter_doc("typo-first", a.url, ["typo-chat"], retries=0, fallback="up-bee"))
    try:
        a.always_fail = True
        failed = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "typo-chat", "messages": ASK})
        error = assert_openai_error(failed, 502, code="upstream_error", type_="server_error")
        assert "typo-first: answered 503" in error["message"], error
        assert "fallback 'up-bee' is not an Adapter" in error["message"] and "spec.fallback" in error["message"], error
    finally:
        a.reset()
        relay.delete("Adapter", "typo-first")


def test_an_upstream_redirect_is_not_followed(relay: Relay, routed: tuple[Upstream, Upstream]) -> None:
    """An upstream's redirect would otherwise point the gateway at any address it reaches (here the
    other upstream; on a cluster its dashboard or a metadata service) and relay what it says."""
    a, b = routed
    body = {"model": "b-only", "messages": ASK, "user": f"redirect:{a.url}/chat/completions"}
    refused = httpx.post(f"{relay.url}/v1/chat/completions", json=body)
    error = assert_openai_error(refused, 502, code="upstream_error", type_="server_error")
    assert "redirect (307)" in error["message"] and "baseUrl" in error["message"], error
    assert len(b.requests) == 1 and not a.requests  # asked once, not again, and the target never reached


def test_an_upstream_429_reaches_the_client_as_a_429_with_its_retry_after(
    relay: Relay, routed: tuple[Upstream, Upstream]
) -> None:
    a, b = routed
    for upstream in (a, b):
        upstream.fail_status, upstream.always_fail = 429, True
    limited = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "remote-chat", "messages": ASK})
    error = assert_openai_error(limited, 429, code="rate_limit_exceeded", type_="rate_limit_error", param="model")
    assert limited.headers["retry-after"] == "7" and "up-a: answered 429" in error["message"]
    assert len(a.requests) == 3 and len(b.requests) == 1  # retried, then the fallback, as for a 503
    b.fail_status = 503  # the last word was a 503: the answer is a 502, not a 429
    assert_openai_error(httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "remote-chat", "messages": ASK}),
                        502, code="upstream_error", type_="server_error")  # fmt: skip


def test_usage_an_upstream_reports_counts_only_when_it_is_whole_and_plausible() -> None:
    """Negative counts would hand tokens and spend back to a key; strings took the request to a 500."""
    from mnemos.relay._metering import _usage_of

    def usage(prompt: Any, completion: Any) -> tuple[int, int] | None:
        return _usage_of(json.dumps({"usage": {"prompt_tokens": prompt, "completion_tokens": completion}}).encode())

    assert usage(12, 30) == (12, 30) and usage(None, 3) == (0, 3)
    for prompt, completion in ((-1_000_000, 5), (3, -1), ("lots", 1), (1, 1e30), (2.5, 1), (True, 1), (10**12, 1)):
        assert usage(prompt, completion) is None, (prompt, completion)


def test_unreachable_upstream_and_missing_secret(relay: Relay) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    relay.apply(
        adapter_doc("down", closed, ["down-model"], retries=1),
        adapter_doc("keyless", closed, ["keyless-model"],
                    auth={"secretRef": {"name": "nowhere", "key": "MNEMOS_TEST_NO_SUCH_KEY"}}),
    )  # fmt: skip
    try:
        down = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "down-model", "messages": ASK})
        assert "ConnectError" in assert_openai_error(down, 502, code="upstream_error", type_="server_error")["message"]
        keyless = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "keyless-model", "messages": ASK})
        error = assert_openai_error(keyless, 503, code="unavailable", type_="server_error")
        assert "nowhere/MNEMOS_TEST_NO_SUCH_KEY" in error["message"]
    finally:
        relay.delete("Adapter", "down")
        relay.delete("Adapter", "keyless")


class _ClosesIdleConnections:
    """A raw HTTP/1.1 upstream on 127.0.0.1 that answers the first request of each connection with
    ``Connection: keep-alive``, then closes that connection unanswered when the next request comes
    on it: what a server whose idle timeout fires as the request goes out looks like to the client."""

    ANSWER = json.dumps({"id": "up-1", "object": "chat.completion", "created": 0, "model": "m",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "fresh"},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                   "total_tokens": 2}}).encode()  # fmt: skip

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answered = 0
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Any) -> None:
        with conn:
            conn.settimeout(30)
            for number in range(2):
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
                while len(body) < length:
                    body += conn.recv(65536)
                if number == 1:  # the second request on this connection: closed unanswered
                    self.dropped += 1
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: keep-alive\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(self.ANSWER), self.ANSWER))  # fmt: skip
                self.answered += 1

    def close(self) -> None:
        self.sock.close()


def test_a_pooled_connection_the_upstream_closed_is_retried_on_a_new_one(relay: Relay) -> None:
    """With ``retries: 0``, a request sent on a kept-alive connection that the upstream closes
    unanswered was a 502 (``ServerDisconnectedError``); it is sent once more on a new connection."""
    upstream = _ClosesIdleConnections()
    relay.apply(adapter_doc("idle-closer", f"http://127.0.0.1:{upstream.port}/v1", ["idle-model"], retries=0))
    try:
        with httpx.Client(timeout=30) as client:
            for _ in range(6):  # every replica reuses its pooled connection at least once
                answer = client.post(f"{relay.url}/v1/chat/completions", json={"model": "idle-model", "messages": ASK})
                assert answer.status_code == 200, answer.text
                assert answer.json()["choices"][0]["message"]["content"] == "fresh"
        assert upstream.dropped >= 1 and upstream.answered == 6
    finally:
        relay.delete("Adapter", "idle-closer")
        upstream.close()


def test_an_adapters_answer_names_the_request_its_lineage_is_under(relay: Relay, routed: tuple[Upstream, Upstream]
                                                                   ) -> None:  # fmt: skip
    """The body's id is the upstream's; ``x-mnemos-request-id`` names MNEMOS's, under which lineage
    keeps the request (``request:<id>``)."""
    raw = relay.openai().chat.completions.with_raw_response.create(model="remote-chat", messages=ASK)
    rid = raw.headers["x-mnemos-request-id"]
    assert rid.startswith("chatcmpl-") and rid != raw.parse().id
    found = until(lambda: httpx.get(f"{relay.url}/v1/lineage/request:{rid}", timeout=30), "its lineage",
                  ready=lambda r: r.status_code == 200, timeout=30, interval=0.5)  # written in batches  # fmt: skip
    assert any(node.get("id") == f"request:{rid}" for node in found.json()["nodes"]), found.text


def test_an_upstream_never_hands_the_adapters_credential_out(relay: Relay, routed: tuple[Upstream, Upstream]) -> None:
    """An upstream that echoes the request it got (a debugging proxy) in a success, or in a stream
    whose chunks split the credential, gets the caller ``[redacted]``, never the operator's key."""
    for stream in (False, True):
        body = {"model": "remote-chat", "messages": ASK, "user": "echo-ok", "stream": stream}
        echoed = httpx.post(f"{relay.url}/v1/chat/completions", json=body, timeout=30)
        assert echoed.status_code == 200, echoed.text
        assert "sk-a-test" not in echoed.text and "debug: [redacted]" in echoed.text, echoed.text
    client = relay.openai()  # the stream is still the event stream an OpenAI client reads, event by event
    streamed = client.chat.completions.create(model="remote-chat", messages=ASK, stream=True, user="echo-ok")
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == "debug: [redacted]"


def test_an_upstream_success_that_is_not_json_is_a_502(relay: Relay, routed: tuple[Upstream, Upstream]) -> None:
    for page in ("html", "not-json"):
        broken = httpx.post(f"{relay.url}/v1/chat/completions", timeout=30,
                            json={"model": "remote-chat", "messages": ASK, "user": page})  # fmt: skip
        error = assert_openai_error(broken, 502, code="upstream_error", type_="upstream_error")
        assert "not a JSON object" in error["message"], error


def test_a_credential_split_across_chunks_is_held_only_while_it_could_be_one() -> None:
    from mnemos.relay.adapters import _redact, _secret_prefix, _secrets

    secrets = _secrets({"authorization": "Bearer sk-live-123456"})
    assert secrets == [b"Bearer sk-live-123456", b"sk-live-123456"]
    assert _redact(b'{"a": "Bearer sk-live-123456", "b": "sk-live-123456"}', secrets) == \
        b'{"a": "[redacted]", "b": "[redacted]"}'  # fmt: skip
    assert _secret_prefix(b'data: {"x": "sk-li', secrets) == 5  # could begin the key: held
    assert _secret_prefix(b'data: {"x": "Bearer sk', secrets) == 9
    assert _secret_prefix(b'data: {"x": "sk-other"}\n\n', secrets) == 0  # an event's end: sent at once
    assert _secret_prefix(b"", secrets) == 0 and _secrets({"x-key": "short"}) == []
