"""Every Ray container gets the same SOUL master key from one Secret (Helm chart and the Python
renderer): without it each pod would make its own, and SOUL's data at rest and ENGRAM's blob
tags written by one pod would not open in another."""

from __future__ import annotations

import base64
import string
from typing import Any

import kubernetes_validate
import pytest

from mnemos.kuberay import KubeRayValues, render_all, validate_manifest

from .support import RAY_KINDS, by_kind, crd_dir, helm_template, one, pod_specs

ALL_KINDS = ("kuberay.rayCluster.enabled=true", "kuberay.rayJob.enabled=true")
# values-dev.yaml ships GENOME resources, so the chart also renders the genome-apply Job.
VALUE_FILES = [(), ("values-dev.yaml",)]
URL_SAFE_B64 = set(string.ascii_letters + string.digits + "-_=")


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
            assert "value" not in env, "the master key must come from a Secret, never inline"
            return dict(env["valueFrom"]["secretKeyRef"])
    return None


def _key_secrets(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-master-key")]


def _expected_objects(files: tuple[str, ...]) -> set[str]:
    names = {"mnemos-mnemos", "mnemos-mnemos-cluster", "mnemos-mnemos-job"}
    return names | {"mnemos-mnemos-genome-apply"} if files else names


@pytest.mark.parametrize("files", VALUE_FILES, ids=["values", "values-dev"])
def test_chart_creates_one_master_key_and_gives_it_to_every_container(files: tuple[str, ...]) -> None:
    objects = helm_template(*files, sets=ALL_KINDS)
    secret = one(by_kind(objects, "Secret"), "Secret", "-master-key")
    assert secret["metadata"]["name"] == "mnemos-mnemos-master-key"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    kubernetes_validate.validate(secret, "1.30", strict=True)
    value = base64.b64decode(secret["data"]["master-key"], validate=True).decode()
    assert set(value) <= URL_SAFE_B64, value
    assert len(base64.urlsafe_b64decode(value)) == 32
    containers = _mnemos_containers(objects)
    assert {name for name, _ in containers} == _expected_objects(files)
    for name, container in containers:
        assert _key_ref(container) == {"name": "mnemos-mnemos-master-key", "key": "master-key"}, name


def test_chart_draws_random_url_safe_keys() -> None:
    """With no Secret to look up (helm template), each render draws new bytes: never a constant key.
    Several renders, so that a standard-base64 key ('+', '/') would show (3/4 of keys have one)."""
    values = set()
    for i in range(6):  # distinct --set values: helm_template caches identical renders
        (secret,) = _key_secrets(helm_template(sets=(f"kuberay.env.RENDER={i}",)))
        value = base64.b64decode(secret["data"]["master-key"], validate=True).decode()
        assert set(value) <= URL_SAFE_B64, value
        assert len(base64.urlsafe_b64decode(value)) == 32
        values.add(value)
    assert len(values) == 6


@pytest.mark.parametrize("files", VALUE_FILES, ids=["values", "values-dev"])
def test_chart_uses_an_existing_secret_instead(files: tuple[str, ...]) -> None:
    objects = helm_template(
        *files, sets=(*ALL_KINDS, "soul.masterKey.existingSecret=mine", "soul.masterKey.secretKey=mk")
    )
    assert not _key_secrets(objects)
    containers = _mnemos_containers(objects)
    assert {name for name, _ in containers} == _expected_objects(files)
    for name, container in containers:
        assert _key_ref(container) == {"name": "mine", "key": "mk"}, name
    for obj in objects:
        if obj["kind"] in RAY_KINDS:
            validate_manifest(obj, crd_dir())


@pytest.mark.parametrize("files", VALUE_FILES, ids=["values", "values-dev"])
def test_chart_without_a_key_secret_sets_no_key(files: tuple[str, ...]) -> None:
    objects = helm_template(*files, sets=(*ALL_KINDS, "soul.masterKey.create=false"))
    assert not _key_secrets(objects)
    containers = _mnemos_containers(objects)
    assert {name for name, _ in containers} == _expected_objects(files)
    assert all(_key_ref(c) is None for _, c in containers)


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
