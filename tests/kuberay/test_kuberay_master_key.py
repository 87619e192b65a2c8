"""Every Ray container gets the same SOUL master key from one Secret (Helm chart and the Python
renderer): without it each pod would make its own, and SOUL's data at rest and ENGRAM's blob
tags written by one pod would not open in another."""

from __future__ import annotations

import base64
from typing import Any

from mnemos.kuberay import KubeRayValues, render_all, validate_manifest

from .support import by_kind, crd_dir, helm_template, one, pod_specs

ALL_KINDS = ("kuberay.rayCluster.enabled=true", "kuberay.rayJob.enabled=true")


def _mnemos_containers(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(object name, container) for every container that runs MNEMOS code (not the job submitter)."""
    out = []
    for obj in objects:
        for spec in pod_specs(obj):
            for container in spec["containers"]:
                if container["name"] != "ray-job-submitter":
                    out.append((obj["metadata"]["name"], container))
    return out


def _key_ref(container: dict[str, Any]) -> dict[str, Any] | None:
    for env in container.get("env") or []:
        if env["name"] == "MNEMOS_MASTER_KEY":
            return dict(env["valueFrom"]["secretKeyRef"])
    return None


def test_chart_creates_one_master_key_and_gives_it_to_every_container() -> None:
    objects = helm_template(sets=ALL_KINDS)
    secret = one(by_kind(objects, "Secret"), "Secret", "-master-key")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    value = base64.b64decode(secret["data"]["master-key"]).decode()
    assert len(base64.urlsafe_b64decode(value)) == 32
    containers = _mnemos_containers(objects)
    assert {name for name, _ in containers} >= {"mnemos-mnemos", "mnemos-mnemos-cluster", "mnemos-mnemos-job"}
    for name, container in containers:
        assert _key_ref(container) == {"name": secret["metadata"]["name"], "key": "master-key"}, name


def test_chart_uses_an_existing_secret_instead() -> None:
    objects = helm_template(
        sets=(*ALL_KINDS, "soul.masterKey.existingSecret=vault-synced", "soul.masterKey.secretKey=mk")
    )
    assert not [s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-master-key")]
    for name, container in _mnemos_containers(objects):
        assert _key_ref(container) == {"name": "vault-synced", "key": "mk"}, name


def test_chart_without_a_key_secret_sets_no_key() -> None:
    objects = helm_template(sets=(*ALL_KINDS, "soul.masterKey.create=false"))
    assert not [s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-master-key")]
    assert all(_key_ref(c) is None for _, c in _mnemos_containers(objects))


def test_python_renderer_refers_every_container_to_the_key_secret() -> None:
    objects = render_all()
    for obj in objects:
        validate_manifest(obj, crd_dir())
    containers = _mnemos_containers(objects)
    assert len(containers) >= 9  # head + two worker groups, in each of the three kinds
    for name, container in containers:
        assert _key_ref(container) == {"name": "mnemos-master-key", "key": "master-key"}, name
    values = KubeRayValues.model_validate({"security": {"masterKeySecret": None}})
    assert all(_key_ref(c) is None for _, c in _mnemos_containers(render_all(values)))
