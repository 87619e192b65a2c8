"""Resource input at its edges: YAML that names a key twice, what ``mnemos get -o yaml`` prints for a
Model (its ``status``) applied again, names Kubernetes would refuse, names that are no names at a
lookup (registry and remote client alike), Policy selectors naming a kind that does not exist, and
Model fields a replica would refuse only after the apply."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from mnemos.engram import Engram
from mnemos.errors import AdmissionError, ValidationError
from mnemos.genome import Registry, load_paths, parse_documents, parse_resource
from mnemos.genome.kinds import resources_of
from mnemos.remote import RemoteClient

ADAPTER = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "up"},
           "spec": {"baseUrl": "http://127.0.0.1:9/v1"}}  # fmt: skip
MODEL = {
    "apiVersion": "genome.mnemos.dev/v1",
    "kind": "Model",
    "metadata": {"name": "tiny"},
    "spec": {"family": "llama", "version": "1", "artifact": {"uri": "engram://models/tiny"},
             "runtime": {"engine": "transformers"}},
}  # fmt: skip


def _model(**spec: object) -> dict:
    doc = copy.deepcopy(MODEL)
    doc["spec"].update(spec)
    return doc


def test_a_key_written_twice_is_refused_naming_its_line(tmp_path: Path) -> None:
    twice = ("apiVersion: genome.mnemos.dev/v1\nkind: Adapter\nmetadata: {name: first}\n"
             "spec: {baseUrl: 'http://h/v1'}\nmetadata: {name: second}\n")  # fmt: skip
    with pytest.raises(ValidationError, match=r"^f.yaml: line 5: key 'metadata' is written twice"):
        parse_documents(twice, "f.yaml")  # PyYAML alone kept the last: adapter/second, first's lines dropped
    nested = "apiVersion: genome.mnemos.dev/v1\nkind: Adapter\nmetadata: {name: a}\nspec:\n  baseUrl: x\n  baseUrl: y\n"
    with pytest.raises(ValidationError, match="line 6: key 'baseUrl' is written twice"):
        parse_documents(nested, "f.yaml")
    path = tmp_path / "a.json"  # JSON too: a later key silently replaced an earlier one
    path.write_text('{"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "a"}, '
                    '"spec": {"baseUrl": "http://h/v1", "retries": 1, "retries": 5}}')  # fmt: skip
    with pytest.raises(ValidationError, match=f"^{path}: line 1: key 'retries' is written twice"):
        load_paths([path])
    merged = ("apiVersion: genome.mnemos.dev/v1\nkind: Adapter\n"
              "metadata: {name: m, <<: {labels: {team: a}}, labels: {team: b}}\n"
              "spec: {baseUrl: 'http://h/v1'}\n")  # fmt: skip
    (resource,) = parse_documents(merged, "f.yaml")  # a merge key's keys may be overridden: no duplicate
    assert resource.metadata.labels == {"team": "b"}


def test_what_get_prints_for_a_model_applies_again(local_engram: Engram, tmp_path: Path) -> None:
    registry = Registry(local_engram)
    stored = registry.apply(parse_resource(MODEL)).resource
    printed = {**stored.dump(), "status": {"phase": "Failed", "reason": "ArtifactMissing", "ready_replicas": 0}}
    for name, text in (("m.yaml", yaml.safe_dump(printed)), ("m.json", json.dumps([printed]))):
        (tmp_path / name).write_text(text)
        (again,) = load_paths([tmp_path / name])
        assert registry.apply(again).action == "unchanged", name


@pytest.mark.parametrize("name", ["a..b", "a.-b", "a-.b", "x" * 254])
def test_names_kubernetes_refuses_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="is not a valid name") as refused:
        parse_resource({**ADAPTER, "metadata": {"name": name}})
    assert refused.value.param == "metadata.name"


def test_names_kubernetes_takes_are_taken() -> None:
    for name in ("a.b", "a-b.c-d", "0", "x" * 253):
        assert parse_resource({**ADAPTER, "metadata": {"name": name}}).name == name


@pytest.mark.parametrize("name", ["../../v1/tokens", "a/b", "a?generation=1", "UPPER", ""])
def test_a_lookup_by_a_name_that_is_none_is_refused_naming_it(local_engram: Engram, name: str) -> None:
    registry = Registry(local_engram)
    for call in (lambda: registry.get("Adapter", name), lambda: registry.history("Adapter", name),
                 lambda: registry.delete("Adapter", name)):  # fmt: skip
        with pytest.raises(ValidationError, match="is not a valid name") as refused:
            call()
        assert refused.value.param == "name"
    # the remote client refuses it too, before any request: no other route of the gateway is reached
    client = RemoteClient("http://127.0.0.1:9", api_key="mk_x")
    for call in (lambda: client.get("Adapter", name), lambda: client.delete("Adapter", name),
                 lambda: client.history("Adapter", name), lambda: client.model_status(name)):  # fmt: skip
        with pytest.raises(ValidationError, match="is not a valid name"):
            call()


def test_a_generation_below_one_is_refused_as_none(local_engram: Engram) -> None:
    registry = Registry(local_engram)
    registry.apply(parse_resource(ADAPTER))
    for generation in (0, -1):
        with pytest.raises(ValidationError, match="generations count from 1") as refused:
            registry.get("Adapter", "up", generation)
        assert refused.value.param == "generation"
    with pytest.raises(ValidationError, match="metadata.generation"):
        parse_resource({**ADAPTER, "metadata": {"name": "up", "generation": -5}})


def test_a_stored_name_a_new_check_refuses_can_still_be_deleted(local_engram: Engram) -> None:
    local_engram.write_json("registry/Adapter/a..b/00000001.json",
                            {**ADAPTER, "metadata": {"name": "a..b", "generation": 1}})  # fmt: skip
    registry = Registry(local_engram)
    assert [r.name for r in registry.list("Adapter")] == []  # left out with a warning
    with pytest.raises(ValidationError, match="delete it with `mnemos delete adapter a..b`"):
        registry.get("Adapter", "a..b")
    assert registry.delete("Adapter", "a..b").generation == 1


def test_apply_sources_that_are_no_resources_are_one_line_errors() -> None:
    for source in (None, 5, b"kind: Adapter"):
        with pytest.raises(ValidationError, match="is no resource") as refused:
            resources_of(source)  # type: ignore[arg-type]
        assert refused.value.param == "source"
    (one,) = resources_of(json.dumps(ADAPTER))  # json.dumps(doc) is one line: text, not a path
    assert one.name == "up"
    (listed,) = resources_of(json.dumps([ADAPTER]))
    assert listed.name == "up"


def test_a_selector_kind_is_a_kind(local_engram: Engram) -> None:
    registry = Registry(local_engram)
    policy = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": "engines"},
              "spec": {"selector": {"kinds": ["models"]}, "rules": {"allowedEngines": ["vllm"]}}}  # fmt: skip
    stored = registry.apply(parse_resource(policy)).resource
    assert stored.spec.selector.kinds == ["Model"]
    with pytest.raises(AdmissionError, match="allowedEngines"):  # `models` matched nothing: admitted before
        registry.apply(parse_resource(MODEL))
    typo = copy.deepcopy(policy)
    typo["spec"]["selector"]["kinds"] = ["Modle"]
    with pytest.raises(ValidationError, match="'Modle' is not a kind") as refused:
        parse_resource(typo)
    assert refused.value.param == "spec.selector.kinds"
    jobs = copy.deepcopy(policy)
    jobs["spec"]["selector"]["kinds"] = ["Job"]  # CORTEX's quotas select jobs
    assert parse_resource(jobs).spec.selector.kinds == ["Job"]


@pytest.mark.parametrize(
    ("spec", "param", "says"),
    [
        ({"artifact": {"uri": "ftp://host/m"}}, "spec.artifact.uri", "unknown scheme 'ftp'"),
        ({"artifact": {"uri": "engram://"}}, "spec.artifact.uri", "names no artifact"),
        ({"artifact": {"uri": "engram://models/tiny", "sha256": "md5:abc"}}, "spec.artifact.sha256",
         "is not a sha256 digest"),
        ({"resources": {"memory": "lots"}}, "spec.resources.memory", "is not a size"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.autoscaling", "more than maxReplicas"),
    ],
)
def test_model_fields_a_replica_would_refuse_are_refused_at_apply(local_engram: Engram, spec: dict, param: str,
                                                                  says: str) -> None:  # fmt: skip
    registry = Registry(local_engram)
    with pytest.raises(ValidationError, match=says) as refused:
        registry.apply(parse_resource(_model(**spec)))
    assert refused.value.param == param
    assert not local_engram.list("registry/Model")
    ok = _model(artifact={"uri": "engram://models/tiny", "sha256": "sha256:..."}, resources={"memory": "512Mi"},
                autoscaling={"minReplicas": 0, "maxReplicas": 2})  # fmt: skip
    assert registry.apply(parse_resource(ok)).action == "created"


def test_a_model_whose_artifact_its_replica_did_not_find_is_artifact_missing() -> None:
    """A ``file://`` or ``s3://`` artifact is looked for where a replica loads it; not found there, the
    model's status says so (reason, condition) and how to provide it, as for a missing ENGRAM ref."""
    from mnemos.relay.model_status import ModelStatusWriter, status_record

    route = {"status": "failed", "reason": "DeployFailed", "generation": 1, "desired_replicas": 1,
             "message": "mnemos.errors.NotFoundError: model artifact file:///models/m1: no such file or folder"}
    record = status_record("m1", route)
    assert (record["phase"], record["reason"]) == ("Failed", "ArtifactMissing")
    assert record["message"].startswith("artifact file:///models/m1 is missing: no such file or folder")
    assert "`mnemos model register DIR --name m1`" in record["message"]
    conditions = {c["type"]: c["status"] for c in ModelStatusWriter._next_conditions([], record)}
    assert conditions == {"Ready": "False", "ArtifactAvailable": "False"}
    other = status_record("m1", {**route, "message": "mnemos.errors.ValidationError: spec.resources.memory: bad"})
    assert (other["reason"], other["message"]) == ("DeployFailed", "spec.resources.memory: bad")


def test_a_list_whose_items_are_no_list_says_so() -> None:
    with pytest.raises(ValidationError, match=r"^f.yaml \(document 1\): a kind: List holds its resources in items"):
        parse_documents("apiVersion: v1\nkind: List\nitems: 5\n", "f.yaml")  # was: "kind: must be one of … 'List'"
    assert parse_documents("apiVersion: v1\nkind: List\nitems:\n", "f.yaml") == []
