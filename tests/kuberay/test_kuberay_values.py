"""KubeRayValues: the seed's defaults, YAML files and ``--set`` overrides, errors naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError as PydanticValidationError

import mnemos
from mnemos.errors import BadRequestError, NotFoundError, ValidationError
from mnemos.kuberay import KubeRayValues, load_values


def test_defaults_follow_the_seed() -> None:
    values = KubeRayValues()
    assert values.image.ref == f"ghcr.io/n1x-mnemos/mnemos:{mnemos.__version__}"
    assert values.storage.bucket == "s3://mnemos-artifacts"
    assert values.storage.storage_class == "fast-zfs"
    assert values.storage.engram_uri == "s3://mnemos-artifacts/engram"
    assert values.storage.spill_uri == "s3://mnemos-artifacts/spill"
    assert values.serve.port == 8080 and values.serve.host == "0.0.0.0"
    assert values.head.resources.requests == {"cpu": "500m", "memory": "1Gi"}
    assert values.head.resources.limits == {"cpu": "2", "memory": "4Gi"}
    assert values.group("gpu-a").node_selector == {"accelerator": "nvidia"}
    assert values.group("gpu-a").gpus == 1
    assert values.group("cpu-a").node_selector == {"accelerator": "cpu"}


def test_unknown_group_lists_the_valid_ones() -> None:
    with pytest.raises(NotFoundError, match="worker groups: cpu-a, gpu-a"):
        KubeRayValues().group("tpu-a")


def test_values_file_and_sets(tmp_path: Path) -> None:
    file = tmp_path / "values.yaml"
    file.write_text("namespace: ml\nimage:\n  tag: '1.2.3'\nworkerGroups:\n  - name: cpu-b\n    replicas: 1\n")
    values = load_values(file, ["worker_groups[0].maxReplicas=4", "storage.bucket=s3://b-1", "env.FOO=bar"])
    assert values.namespace == "ml"
    assert values.image.tag == "1.2.3"
    registry = load_values(sets=["image.repository=registry.local:5000/ml/mnemos_x", "image.tag=v1.2_rc-1"]).image
    assert registry.ref == "registry.local:5000/ml/mnemos_x:v1.2_rc-1"
    assert [g.name for g in values.worker_groups] == ["cpu-b"]
    assert values.worker_groups[0].max_replicas == 4
    assert values.storage.bucket == "s3://b-1"
    assert values.env == {"FOO": "bar"}


@pytest.mark.parametrize(
    ("sets", "error", "text"),
    [
        (["replicas"], BadRequestError, "expected key=value"),
        (["head.replica=3"], ValidationError, "values.head.replica: extra field not permitted"),
        (["workerGroups[5].replicas=3"], ValidationError, "no such list item"),
        (["workerGroups[0].minReplicas=50"], ValidationError, "minReplicas (50) is greater than maxReplicas"),
        (["storage.bucket=mnemos-artifacts"], ValidationError, "not an S3 bucket URI"),
        (["name=Not_A_Name"], ValidationError, "DNS-1035"),
        (["image.tag=1\n  evil: 1"], ValidationError, "values.image.tag: '1\\n  evil: 1' is not an image tag"),
        (["image.repository=Org/App"], ValidationError, "'Org/App' is not an image repository"),
        (["image.repository=ghcr.io/x y"], ValidationError, "is not an image repository: [host[:port]/]path"),
    ],
)
def test_bad_values_are_clear_errors(sets: list[str], error: type, text: str) -> None:
    with pytest.raises(error) as info:
        load_values(sets=sets)
    assert text in info.value.message


def test_duplicate_groups_are_refused() -> None:
    with pytest.raises(ValidationError, match="cpu-a repeated"):
        load_values(data={"workerGroups": [{"name": "cpu-a"}, {"name": "cpu-a"}]})


def test_bad_values_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("namespace: [unclosed\n")
    with pytest.raises(BadRequestError, match="not valid YAML"):
        load_values(bad)
    with pytest.raises(BadRequestError, match="cannot read values file"):
        load_values(tmp_path / "missing.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n")
    with pytest.raises(ValidationError, match="must be a mapping"):
        load_values(listed)


@pytest.mark.parametrize(
    ("values", "text"),
    [({"namespace": "ml\n"}, "is not a valid namespace"), ({"storage": {"bucket": "s3://b-1\n"}}, "not an S3 bucket"),
     ({"storage": {"spillPrefix": "spill\n"}}, "spillPrefix"), ({"image": {"tag": "1\n"}}, "not an image tag")],
)  # fmt: skip
def test_a_trailing_newline_is_not_part_of_a_valid_value(values: dict, text: str) -> None:
    """A pattern ending in $ under re.match accepted 'ml\\n' (its $ matches before a final newline)."""
    with pytest.raises(PydanticValidationError, match=re.escape(text)):
        KubeRayValues.model_validate(values)
