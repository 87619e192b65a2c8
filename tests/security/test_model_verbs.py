"""Routes that run a model outside the OpenAI paths need ``infer``: a pipeline with model steps
(started over HTTP) and a space search. Tried with a viewer's key, a developer credential scoped to
``submit`` only, and a developer's key (which gets past the verb: 404 for what does not exist)."""

from __future__ import annotations

from typing import Any

from security_support import Gateway

MODEL_PIPELINE = {
    "apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "sec-infer"},
    "spec": {"steps": [{"name": "gen", "runtime": "neuron-llm", "modelRef": "sec-no-model",
                        "input": "runs/x/prompts", "outputs": [{"name": "results"}]}]},
}  # fmt: skip


def _refused(resp: Any, status: int, needle: str) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and needle in error["message"], error


def test_model_running_routes_need_infer(gateway: Gateway) -> None:
    gateway.client.apply([MODEL_PIPELINE])
    submit_only = gateway.store.create_token("sec-submit-only", "developer", scopes=["submit"], ttl=600).secret
    run, search = "/v1/pipelines/sec-infer/runs", "/v1/spaces/sec-space/search"
    _refused(gateway.call("POST", run, "viewer", json={}), 403, "submit")
    _refused(gateway.call("POST", run, submit_only, json={}), 403, "infer")
    _refused(gateway.call("POST", run, "developer", json={}), 404, "sec-no-model")  # past the verb check
    _refused(gateway.call("POST", search, "viewer", json={"query": "q"}), 403, "infer")
    _refused(gateway.call("POST", search, submit_only, json={"query": "q"}), 403, "infer")
    _refused(gateway.call("POST", search, "developer", json={"query": "q"}), 404, "sec-space")


def test_a_models_status_needs_a_credential_and_read_artifacts(gateway: Gateway) -> None:
    """``GET /apis/…/models/{name}/status`` (what `describe model` reads over a URL): the caller is known
    and holds ``read-artifacts`` before the registry is asked; every role holds it (as ``/v1/status``,
    which carries the same records), a credential scoped without it does not."""
    path = "/apis/genome.mnemos.dev/v1/models/sec-no-model/status"
    infer_only = gateway.store.create_token("sec-infer-only", "developer", scopes=["infer"], ttl=600).secret
    _refused(gateway.call("GET", path), 401, "")
    _refused(gateway.call("GET", path, infer_only), 403, "read-artifacts")
    for who in ("viewer", "developer"):  # past the verb check: no such model
        _refused(gateway.call("GET", path, who), 404, "sec-no-model")
    _refused(gateway.call("GET", "/apis/genome.mnemos.dev/v1/policies/x/status", "viewer"), 404, "only models")
