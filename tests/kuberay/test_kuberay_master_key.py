"""Every Ray container gets the same SOUL master key from one Secret (Helm chart and the Python
renderer): without it each pod would make its own, and SOUL's data at rest and ENGRAM's blob
tags written by one pod would not open in another. Rendering never draws a key unless asked
(``soul.masterKey.source=generate``): under `helm template` or Argo CD each render would rotate it."""

from __future__ import annotations

import base64
import string
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mnemos.kuberay import KubeRayValues, render_all, validate_manifest

from .support import CHART, RAY_KINDS, by_kind, crd_dir, helm_template, one, pod_specs, run_helm

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


GENERATE = "soul.masterKey.source=generate"
# What External Secrets Operator's v1beta1 ExternalSecret accepts for the fields the chart sets.
ESO_STORE_KINDS = {"SecretStore", "ClusterSecretStore"}
ESO_CREATION = {"Owner", "Orphan", "Merge", "None"}
ESO_DELETION = {"Delete", "Merge", "Retain"}


def _assert_every_container_refers_to(objects: list[dict[str, Any]], files: tuple[str, ...], ref: dict | None) -> None:
    containers = _mnemos_containers(objects)
    assert {name for name, _ in containers} == _expected_objects(files)
    for name, container in containers:
        assert _key_ref(container) == ref, name


def _raw_render(*sets: str) -> str:
    """One `helm template` run, uncached (support.helm_template caches identical renders)."""
    args = ["template", "mnemos", str(CHART), "--namespace", "mnemos"]
    for s in (*ALL_KINDS, *sets):
        args += ["--set", s]
    proc = run_helm(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _master_key_value(secret: dict[str, Any]) -> str:
    value = base64.b64decode(secret["data"]["master-key"], validate=True).decode()
    assert set(value) <= URL_SAFE_B64, value
    assert len(base64.urlsafe_b64decode(value)) == 32
    return value


@pytest.mark.parametrize("files", VALUE_FILES, ids=["values", "values-dev"])
def test_default_render_refers_to_an_existing_secret_and_draws_no_key(files: tuple[str, ...]) -> None:
    """helm template / Argo CD: no Secret with key material, every container reads the existing one."""
    objects = helm_template(*files, sets=ALL_KINDS)
    assert not _key_secrets(objects), "the default render must not create a master key"
    assert not by_kind(objects, "Secret")
    _assert_every_container_refers_to(objects, files, {"name": "mnemos-mnemos-master-key", "key": "master-key"})


def test_default_renders_are_identical() -> None:
    first, second = _raw_render(), _raw_render()
    assert first == second, "two renders of the same values differ: Argo CD would see drift on every sync"


def test_generate_is_an_explicit_opt_in_that_still_draws_url_safe_keys() -> None:
    """With source=generate and no Secret to look up (helm template), each render draws new bytes:
    that is why it is opt-in. Several renders, so a standard-base64 key ('+', '/') would show."""
    objects = helm_template(sets=(*ALL_KINDS, GENERATE))
    secret = one(by_kind(objects, "Secret"), "Secret", "-master-key")
    assert secret["metadata"]["name"] == "mnemos-mnemos-master-key"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    kubernetes_validate.validate(secret, "1.30", strict=True)
    _assert_every_container_refers_to(objects, (), {"name": "mnemos-mnemos-master-key", "key": "master-key"})
    values = {_master_key_value(s) for s in _key_secrets_of_renders(6)}
    assert len(values) == 6


def _key_secrets_of_renders(n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        (secret,) = _key_secrets([d for d in yaml.safe_load_all(_raw_render(GENERATE)) if d])
        out.append(secret)
    return out


@pytest.mark.parametrize("files", VALUE_FILES, ids=["values", "values-dev"])
def test_chart_uses_a_named_existing_secret(files: tuple[str, ...]) -> None:
    objects = helm_template(
        *files, sets=(*ALL_KINDS, "soul.masterKey.existingSecret=mine", "soul.masterKey.secretKey=mk")
    )
    assert not _key_secrets(objects) and not by_kind(objects, "ExternalSecret")
    _assert_every_container_refers_to(objects, files, {"name": "mine", "key": "mk"})
    for obj in objects:
        if obj["kind"] in RAY_KINDS:
            validate_manifest(obj, crd_dir())


def test_external_secret_path_renders_a_valid_external_secret() -> None:
    sets = (*ALL_KINDS, "soul.masterKey.source=externalSecret")
    objects = helm_template(sets=sets)
    assert not _key_secrets(objects), "no key material in the render"
    (es,) = [o for o in by_kind(objects, "ExternalSecret") if o["metadata"]["name"].endswith("-master-key")]
    assert es["apiVersion"] == "external-secrets.io/v1beta1"
    spec = es["spec"]
    assert set(spec) == {"refreshInterval", "secretStoreRef", "target", "data"}
    assert spec["secretStoreRef"] == {"name": "soul-vault", "kind": "ClusterSecretStore"}
    assert spec["secretStoreRef"]["kind"] in ESO_STORE_KINDS
    assert spec["target"]["name"] == "mnemos-mnemos-master-key"
    assert spec["target"]["creationPolicy"] in ESO_CREATION and spec["target"]["deletionPolicy"] in ESO_DELETION
    assert spec["data"] == [{"secretKey": "master-key", "remoteRef": {"key": "/mnemos/soul/master_key"}}]
    _assert_every_container_refers_to(objects, (), {"name": "mnemos-mnemos-master-key", "key": "master-key"})
    assert _raw_render("soul.masterKey.source=externalSecret") == _raw_render("soul.masterKey.source=externalSecret")


@pytest.mark.parametrize("files", VALUE_FILES, ids=["values", "values-dev"])
def test_chart_without_a_key_secret_sets_no_key(files: tuple[str, ...]) -> None:
    objects = helm_template(*files, sets=(*ALL_KINDS, "soul.masterKey.source=none"))
    assert not _key_secrets(objects)
    _assert_every_container_refers_to(objects, files, None)


def test_the_old_create_switch_is_refused_with_its_replacement() -> None:
    proc = run_helm("template", "mnemos", str(CHART), "--set", "soul.masterKey.create=false")
    assert proc.returncode != 0
    assert "soul.masterKey.create was replaced by soul.masterKey.source" in proc.stderr


def test_an_unknown_source_is_refused_with_the_valid_choices() -> None:
    proc = run_helm("template", "mnemos", str(CHART), "--set", "soul.masterKey.source=random")
    assert proc.returncode != 0
    # values.schema.json refuses it before the template's own check ("valid choices are …") runs.
    assert "'/soul/masterKey/source': value must be one of 'existingSecret', 'externalSecret', 'generate', 'none'" in (
        proc.stderr
    )


@pytest.mark.parametrize(
    ("source", "says"),
    [("existingSecret", "kubectl -n mnemos create secret generic mnemos-mnemos-master-key"),
     ("generate", "Never render this release with `helm template`, Argo CD")],
)  # fmt: skip
def test_notes_say_where_the_key_comes_from(source: str, says: str) -> None:
    args = ["install", "mnemos", str(CHART), "--namespace", "mnemos", "--dry-run=client"]
    proc = run_helm(*args, "--set", f"soul.masterKey.source={source}")
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout[proc.stdout.index("NOTES:") :]
    assert says in notes


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
