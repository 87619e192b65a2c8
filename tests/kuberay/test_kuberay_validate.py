"""The strict CRD validator catches what the published (lenient) CRD schemas let through."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from mnemos.errors import NotFoundError, ValidationError
from mnemos.kuberay import find_crd_dir, load_schema, render_raycluster, validate_manifest

from .support import MANIFESTS, crd_dir


def _manifest(name: str) -> dict:
    return yaml.safe_load((MANIFESTS / name).read_text())


def test_misspelled_field_fails_and_names_its_path() -> None:
    obj = _manifest("raycluster.yaml")
    group = obj["spec"]["workerGroupSpecs"][0]
    group["replica"] = group.pop("replicas")
    with pytest.raises(ValidationError) as info:
        validate_manifest(obj, crd_dir())
    assert info.value.param == "spec.workerGroupSpecs[0].replica"
    assert "did you mean 'replicas'" in info.value.message


def test_misspelled_field_deep_in_a_pod_template_fails() -> None:
    obj = _manifest("rayservice.yaml")
    container = obj["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicyy"] = container.pop("imagePullPolicy")
    with pytest.raises(ValidationError) as info:
        validate_manifest(obj, crd_dir())
    assert info.value.param == "spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].imagePullPolicyy"


def test_the_published_schema_alone_would_accept_the_typo() -> None:
    """Why the validator is strict: plain jsonschema on the CRD does not reject unknown fields."""
    import jsonschema

    raw = yaml.safe_load((crd_dir() / "ray.io_rayclusters.yaml").read_text())
    (v1,) = [v for v in raw["spec"]["versions"] if v["name"] == "v1"]
    obj = _manifest("raycluster.yaml")
    obj["spec"]["workerGroupSpecs"][0]["replica"] = 3
    jsonschema.Draft7Validator(v1["schema"]["openAPIV3Schema"]).validate(obj)  # no error
    with pytest.raises(ValidationError):
        validate_manifest(obj, crd_dir())


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("raycluster.yaml", ["spec", "headGroupSpec", "template"]),
        ("rayservice.yaml", ["spec", "rayClusterConfig"]),
        ("rayjob.yaml", ["spec", "rayClusterSpec", "workerGroupSpecs", 0, "groupName"]),
    ],
)
def test_removed_required_field_fails(name: str, path: list) -> None:
    obj = _manifest(name)
    node = obj
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    with pytest.raises(ValidationError) as info:
        validate_manifest(obj, crd_dir())
    assert info.value.param is not None and info.value.param.endswith(str(path[-1]))
    assert "required" in info.value.message


def test_wrong_type_and_wrong_enum_fail() -> None:
    obj = render_raycluster()
    bad = copy.deepcopy(obj)
    bad["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "ten"
    with pytest.raises(ValidationError, match="maxReplicas"):
        validate_manifest(bad, crd_dir())
    bad = copy.deepcopy(obj)
    bad["spec"]["autoscalerOptions"]["upscalingMode"] = "Fast"
    with pytest.raises(ValidationError, match="upscalingMode"):
        validate_manifest(bad, crd_dir())


def test_kuberay_operator_rules_are_checked_too() -> None:
    obj = render_raycluster()
    bad = copy.deepcopy(obj)
    bad["spec"]["workerGroupSpecs"][0]["minReplicas"] = 20
    with pytest.raises(ValidationError, match="minReplicas 20 is greater than maxReplicas"):
        validate_manifest(bad, crd_dir())
    bad = copy.deepcopy(obj)
    bad["spec"]["headGroupSpec"]["rayStartParams"]["redis-password"] = "x"
    with pytest.raises(ValidationError, match="gcsFaultToleranceOptions.redisPassword"):
        validate_manifest(bad, crd_dir())
    bad = copy.deepcopy(obj)
    bad["metadata"]["name"] = "Mnemos_Cluster"
    with pytest.raises(ValidationError, match="DNS-1035"):
        validate_manifest(bad, crd_dir())


def test_bad_serve_config_fails() -> None:
    obj = _manifest("rayservice.yaml")
    obj["spec"]["serveConfigV2"] = "applications: [\n"
    with pytest.raises(ValidationError, match="serveConfigV2"):
        validate_manifest(obj, crd_dir())


def test_not_a_ray_object_fails() -> None:
    with pytest.raises(ValidationError, match="apiVersion"):
        validate_manifest({"apiVersion": "v1", "kind": "ConfigMap"}, crd_dir())
    with pytest.raises(NotFoundError, match="no CRD for kind 'RayThing'"):
        validate_manifest({"apiVersion": "ray.io/v1", "kind": "RayThing"}, crd_dir())


def test_schemas_are_parsed_once_per_folder() -> None:
    first = load_schema("RayCluster", crd_dir())
    assert load_schema("RayCluster", crd_dir()) is first
    assert first["properties"]["spec"]["additionalProperties"] is False


def test_crd_folder_comes_from_argument_environment_or_shared(monkeypatch, tmp_path: Path) -> None:
    assert find_crd_dir(crd_dir()) == crd_dir()
    monkeypatch.setenv("MNEMOS_KUBERAY_CRDS", str(crd_dir()))
    assert find_crd_dir() == crd_dir()
    with pytest.raises(NotFoundError, match="does not exist"):
        find_crd_dir(tmp_path / "missing")
    monkeypatch.setenv("MNEMOS_KUBERAY_CRDS", str(tmp_path / "missing"))
    with pytest.raises(NotFoundError, match="does not exist"):
        find_crd_dir()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cpu-a", "'cpu-a' is also workerGroupSpecs[0].groupName; the KubeRay operator refuses duplicate group names"),
        ("Bad_Pool", "'Bad_Pool' is not a DNS-1123 label"),
    ],
)
def test_worker_group_names_must_be_unique_labels(name: str, message: str) -> None:
    obj = _manifest("raycluster.yaml")
    groups = obj["spec"]["workerGroupSpecs"]
    assert groups[0]["groupName"] == "cpu-a"
    groups[1]["groupName"] = name
    with pytest.raises(ValidationError) as info:
        validate_manifest(obj, crd_dir())
    assert info.value.param == "spec.workerGroupSpecs[1].groupName"
    assert message in info.value.message
    service = _manifest("rayservice.yaml")
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][1]["groupName"] = name
    with pytest.raises(ValidationError) as info:
        validate_manifest(service, crd_dir())
    assert info.value.param == "spec.rayClusterConfig.workerGroupSpecs[1].groupName"


def test_unreadable_crd_folder_is_an_error_naming_the_file(tmp_path: Path) -> None:
    from mnemos.errors import BadRequestError

    (tmp_path / "notes.yaml").write_text("a: [b\nc: d: e\n")
    with pytest.raises(BadRequestError) as info:
        validate_manifest(_manifest("raycluster.yaml"), tmp_path)
    assert "notes.yaml (line 2)" in info.value.message and info.value.param == "crd_dir"
