from __future__ import annotations

import re

import pytest
from tests_support import SHARED

from mnemos.errors import ValidationError
from mnemos.genome import Model, Pipeline, json_schema, parse_documents, parse_resource

SEED = (SHARED / "seed" / "000_1654d3f2ddd76d2c.txt").read_text()


def _seed_docs(kind: str) -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", SEED, re.S)
    return next(b for b in blocks if f"kind: {kind}" in b and "mnemos.dev/v1" in b)


def test_seed_model_loads_verbatim() -> None:
    [model] = parse_documents(_seed_docs("Model"))
    assert isinstance(model, Model)
    assert model.name == "qwen2-7b-instruct"
    assert model.spec.family == "qwen2" and model.spec.version == "7b-instruct"
    assert model.spec.artifact.uri == "s3://mnemos-models/qwen2/7b-instruct/weights.safetensors"
    assert model.spec.tokenizer is not None and model.spec.tokenizer.uri.endswith("tokenizer.json")
    assert model.spec.runtime.engine == "vllm"
    assert model.spec.runtime.params.tensor_parallel == 1 and model.spec.runtime.params.max_tokens == 2048
    assert model.spec.policy.pii == "redact" and model.spec.policy.license == "apache-2.0"


def test_seed_pipeline_loads_verbatim() -> None:
    [pipeline] = parse_documents(_seed_docs("Pipeline"))
    assert isinstance(pipeline, Pipeline)
    steps = {s.name: s for s in pipeline.spec.steps}
    assert [s.name for s in pipeline.spec.steps] == ["prepare", "infer", "index"]
    assert steps["prepare"].type == "script" and steps["prepare"].image == "ghcr.io/n1x-mnemos/tools:latest"
    assert steps["infer"].type == "infer" and steps["infer"].model_ref == "qwen2-7b-instruct"
    assert steps["infer"].params == {"temperature": 0.7, "max_tokens": 512, "top_p": 0.95}
    assert steps["infer"].outputs[0].name == "results"
    assert steps["index"].env[0].name == "ENGRAM_URI"
    assert pipeline.spec.order() == ["prepare", "infer", "index"]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("spec", "runtime", "engin"), "vllm", "spec.runtime.engin: extra field not permitted"),
        (("spec", "artifact", "sha"), "x", "spec.artifact.sha: extra field not permitted"),
        (("spec", "runtime", "engine"), "tensorrt", "spec.runtime.engine"),
        (("metadata", "name"), "Bad_Name", "metadata.name"),
        (("metadata", "name"), "tiny-chat\n", "metadata.name"),  # `$` of a Python regex matches before "\n"
        (("spec", "replicas"), -1, "spec.replicas"),
        (("metadata", "labels"), {"a b": "x"}, "metadata.labels: 'a b' is not a valid label key"),
        (("metadata", "labels"), {"team": "x\ny"}, "metadata.labels: label team: 'x\\ny' is not a valid label value"),
        (("metadata", "labels"), {"team": "a" * 64}, "is not a valid label value: up to 63"),
        (("metadata", "annotations"), {"-x": "y"}, "metadata.annotations: '-x' is not a valid annotation key"),
    ],
)
def test_misspelled_or_invalid_field_names_its_path(path: tuple[str, ...], value: object, expected: str) -> None:
    import yaml

    doc = yaml.safe_load(_seed_docs("Model"))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValidationError) as err:
        parse_resource(doc)
    assert expected in err.value.message
    assert err.value.param and err.value.param.startswith(".".join(path[:2]))


def test_missing_required_field_is_named() -> None:
    import yaml

    doc = yaml.safe_load(_seed_docs("Model"))
    del doc["spec"]["runtime"]
    with pytest.raises(ValidationError, match=r"spec\.runtime: Field required"):
        parse_resource(doc)


def test_wrong_api_version_and_unknown_kind() -> None:
    with pytest.raises(ValidationError, match="use 'synkron.mnemos.dev/v1'"):
        parse_resource({"apiVersion": "genome.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p"},
                        "spec": {"steps": [{"name": "a", "call": "m:f"}]}})
    with pytest.raises(ValidationError, match="kind: must be one of"):
        parse_resource({"apiVersion": "genome.mnemos.dev/v1", "kind": "Modle", "metadata": {"name": "m"}})


def test_pipeline_dag_errors() -> None:
    base = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p"}}
    with pytest.raises(ValidationError, match="cycle"):
        parse_resource({**base, "spec": {"steps": [
            {"name": "a", "call": "m:f", "needs": ["b"]}, {"name": "b", "call": "m:f", "needs": ["a"]}]}})
    with pytest.raises(ValidationError, match="unknown step"):
        parse_resource({**base, "spec": {"steps": [{"name": "a", "call": "m:f", "needs": ["zz"]}]}})
    with pytest.raises(ValidationError, match="exactly one of"):
        parse_resource({**base, "spec": {"steps": [{"name": "a"}]}})


def test_bad_yaml_is_a_bad_request() -> None:
    from mnemos.errors import BadRequestError

    with pytest.raises(BadRequestError, match="not valid YAML"):
        parse_documents("kind: [unclosed", "x.yaml")


@pytest.mark.parametrize("kind", ["Model", "Policy", "Adapter", "Pipeline", "models"])
def test_json_schema_per_kind(kind: str) -> None:
    schema = json_schema(kind)
    assert schema["type"] == "object"
    assert {"apiVersion", "metadata", "spec"} <= set(schema["properties"])


def test_policy_quotas_group_by_identity_and_old_documents_still_load() -> None:
    """``per: principal | team`` count by the authenticated caller; the Policies written before
    ``per`` (a label, ``team`` by default) load as they were, grouping by that label."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "deployments"
    docs = [d for p in sorted(root.rglob("*.yaml")) if "kind: Policy" in p.read_text()
            for d in yaml.safe_load_all(p.read_text())
            if isinstance(d, dict) and d.get("kind") == "Policy"]  # (Helm values have no kind)
    quotas = [q for d in docs for q in parse_resource(d).spec.quotas]
    assert quotas and all(q.per == "label" and q.label == "team" for q in quotas)
    per = [{"per": "principal", "maxRunningJobs": 2}, {"per": "team", "teams": ["vision"], "maxGpus": 1}]
    doc = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": "per-user"},
           "spec": {"selector": {"kinds": ["Job"]}, "quotas": per}}  # fmt: skip
    quotas = parse_resource(doc).spec.quotas
    assert [(q.per, q.teams) for q in quotas] == [("principal", []), ("team", ["vision"])]
    doc["spec"]["quotas"] = [{"per": "user"}]
    with pytest.raises(ValidationError) as err:
        parse_resource(doc)
    assert "spec.quotas.0.per" in err.value.message


def test_pipeline_retries_fit_a_jobs_attempts() -> None:
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p"},
           "spec": {"steps": [{"name": "a", "script": "true", "retries": 19}]}}  # fmt: skip
    assert parse_resource(doc).spec.steps[0].retries == 19
    doc["spec"]["steps"][0]["retries"] = 20
    with pytest.raises(ValidationError, match="retries"):
        parse_resource(doc)


def test_labels_and_annotations_as_kubernetes_takes_them() -> None:
    """Labels select resources (Policy matchLabels) and reach Kubernetes as they are: Kubernetes' rules, so
    a resource GitOps or a CRD takes is one MNEMOS took; an annotation's value is any text."""
    import yaml

    doc = yaml.safe_load(_seed_docs("Model"))
    doc["metadata"]["labels"] = {"team": "ml", "example.com/stage": "", "a.b_c-d": "v1.2_x-y"}
    doc["metadata"]["annotations"] = {"mnemos.dev/note": "any text\nover lines: {}"}
    meta = parse_resource(doc).metadata
    assert meta.labels["a.b_c-d"] == "v1.2_x-y" and meta.annotations["mnemos.dev/note"].endswith("{}")
