"""Models come and go without restarting the gateway; a client that disconnects stops its generation."""

from __future__ import annotations

import concurrent.futures

import httpx
import ray
from relay_support import Relay, assert_openai_error
from tests_support import model_doc

ASK = {"messages": [{"role": "user", "content": "ping pong"}]}


def _ids(relay: Relay) -> list[str]:
    return [m.id for m in relay.openai().models.list().data]


def test_apply_update_delete_a_model(relay: Relay) -> None:
    url = f"{relay.url}/v1/chat/completions"
    assert_openai_error(httpx.post(url, json={"model": "lifecycle", **ASK}), 404, code="model_not_found")

    status = relay.apply(model_doc("lifecycle"))
    assert status["models"]["lifecycle"]["status"] == "ready"
    assert "lifecycle" in _ids(relay)
    assert httpx.post(url, json={"model": "lifecycle", **ASK}).json()["choices"][0]["message"]["content"] == "ping pong"

    # A new generation (a smaller token limit) replaces the deployment; the route follows.
    status = relay.apply(model_doc("lifecycle", runtime={"engine": "echo", "params": {"maxTokens": 1}}))
    assert status["models"]["lifecycle"]["generation"] == 2
    reply = httpx.post(url, json={"model": "lifecycle", **ASK}).json()
    assert reply["choices"][0]["message"]["content"] == "ping"
    assert_openai_error(httpx.post(url, json={"model": "lifecycle", "max_tokens": 5, **ASK}), 422, param="max_tokens")

    relay.delete("Model", "lifecycle")
    assert "lifecycle" not in _ids(relay)
    assert_openai_error(httpx.post(url, json={"model": "lifecycle", **ASK}), 404, code="model_not_found")
    from ray import serve

    assert "model-lifecycle" not in serve.status().applications
    # The other model never stopped serving.
    assert httpx.post(url, json={"model": "echo", **ASK}).status_code == 200


def test_a_model_that_cannot_load_is_503_with_the_reason(relay: Relay) -> None:
    doc = model_doc("broken", runtime={"engine": "transformers"}, artifact={"uri": "engram://models/never-stored"})
    status = relay.apply(doc)
    route = status["models"]["broken"]
    assert route["status"] == "failed"
    assert "never-stored" in route["message"]
    response = httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "broken", **ASK})
    error = assert_openai_error(response, 503, code="unavailable", type_="server_error")
    assert error["message"].startswith(f"model 'broken' is failed ({route['reason']})")
    assert "never-stored" not in error["message"]  # the artifact and the error stay with the model's status
    assert httpx.get(f"{relay.url}/readyz").json()["models"]["broken"] == "failed"
    assert "broken" not in _ids(relay)
    relay.delete("Model", "broken")
    assert_openai_error(httpx.post(f"{relay.url}/v1/chat/completions", json={"model": "broken", **ASK}), 404)


def test_controller_restart_adopts_running_models(relay: Relay) -> None:
    """A restarted controller re-lists and adopts running models; the gateway serves throughout."""
    client = relay.openai()
    client.chat.completions.create(model="echo", messages=ASK["messages"])
    served = relay.model_stats("echo")["requests"]
    assert served >= 1
    ray.kill(relay.controller, no_restart=False)  # Ray restarts it (max_restarts=-1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        synced = pool.submit(relay.sync)
        statuses = []
        with httpx.Client(timeout=30) as http:
            while not synced.done() or len(statuses) < 20:
                statuses.append(
                    http.post(f"{relay.url}/v1/chat/completions", json={"model": "echo", **ASK}).status_code
                )
                assert len(statuses) < 20_000
        status = synced.result()
    assert set(statuses) == {200}
    assert status["models"]["echo"]["status"] == "ready"
    # The same replica serves on (a redeploy would have reset its counters).
    assert relay.model_stats("echo")["requests"] >= served + len(statuses)
    reply = client.chat.completions.create(model="echo", messages=ASK["messages"])
    assert reply.choices[0].message.content == "ping pong"
