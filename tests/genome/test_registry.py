from __future__ import annotations

import copy

import pytest

from mnemos.engram import Engram
from mnemos.errors import AdmissionError, NotFoundError, PermissionDeniedError
from mnemos.genome import Registry, parse_resource

MODEL = {
    "apiVersion": "genome.mnemos.dev/v1",
    "kind": "Model",
    "metadata": {"name": "tiny", "labels": {"team": "ml"}},
    "spec": {
        "family": "llama",
        "version": "tiny",
        "artifact": {"uri": "engram://models/tiny"},
        "runtime": {"engine": "transformers"},
        "policy": {"license": "apache-2.0"},
    },
}
POLICY = {
    "apiVersion": "genome.mnemos.dev/v1",
    "kind": "Policy",
    "metadata": {"name": "licenses"},
    "spec": {"selector": {"kinds": ["Model"]}, "rules": {"allowedLicenses": ["apache-2.0", "mit"]}},
}


def _model(**spec_changes: object) -> dict:
    doc = copy.deepcopy(MODEL)
    doc["spec"].update(spec_changes)
    return doc


def test_generations_and_noop_reapply(engram: Engram) -> None:
    reg = Registry(engram)
    first = reg.apply(parse_resource(_model()))
    assert (first.action, first.resource.generation) == ("created", 1)
    again = reg.apply(parse_resource(_model()))
    assert (again.action, again.resource.generation) == ("unchanged", 1)
    changed = reg.apply(parse_resource(_model(version="tiny-2")))
    assert (changed.action, changed.resource.generation) == ("configured", 2)
    assert [r.spec.version for r in reg.history("Model", "tiny")] == ["tiny", "tiny-2"]
    assert reg.get("Model", "tiny", generation=1).spec.version == "tiny"
    assert reg.get("model", "tiny").generation == 2


def test_persists_across_a_new_registry(engram: Engram) -> None:
    Registry(engram).apply(parse_resource(_model()))
    Registry(engram).apply(parse_resource(_model(version="v2")))
    fresh = Registry(Engram(engram.uri, engram.storage_options))
    assert [(type(r).__name__, r.name, r.generation) for r in fresh.list()] == [("Model", "tiny", 2)]


def test_delete_keeps_history_and_reapply_continues(engram: Engram) -> None:
    reg = Registry(engram)
    reg.apply(parse_resource(_model()))
    reg.delete("Model", "tiny")
    with pytest.raises(NotFoundError, match=r"deleted at generation 1 \(`mnemos history model tiny`"):
        reg.get("Model", "tiny")
    assert reg.list("Model") == []
    (gone,) = reg.history("Model", "tiny")
    assert gone.metadata.deletion_timestamp and gone.metadata.deletion_timestamp >= gone.metadata.creation_timestamp
    assert gone.dump()["metadata"]["deletionTimestamp"] == gone.metadata.deletion_timestamp
    forged = _model()
    forged["metadata"]["deletionTimestamp"] = "2000-01-01T00:00:00+00:00"  # a copy of history, applied again
    again = reg.apply(parse_resource(forged))
    assert (again.action, again.resource.generation) == ("created", 2)
    assert again.resource.metadata.deletion_timestamp is None and reg.get("Model", "tiny").generation == 2
    first, second = reg.history("Model", "tiny")
    assert first.metadata.deletion_timestamp == gone.metadata.deletion_timestamp
    assert second.metadata.deletion_timestamp is None
    # a tombstone of an older release records no time: the time it was stored stands in for it
    reg.delete("Model", "tiny")
    engram.write_json("registry/Model/tiny/deleted-00000002.json", {"generation": 2})
    assert reg.history("Model", "tiny")[1].metadata.deletion_timestamp >= second.metadata.creation_timestamp
    with pytest.raises(NotFoundError, match=r"^model/absent not found$"):
        reg.delete("Model", "absent")
    with pytest.raises(NotFoundError, match=r"^model/absent not found$"):
        reg.get("Model", "absent")


def test_admission_refuses_with_policy_and_rule(local_engram: Engram) -> None:
    reg = Registry(local_engram)
    reg.apply(parse_resource(POLICY))
    with pytest.raises(AdmissionError) as err:
        reg.apply(parse_resource(_model(policy={"license": "gpl-3.0"})))
    assert "Policy 'licenses'" in err.value.message and "allowedLicenses" in err.value.message
    assert err.value.status == 403
    assert reg.list("Model") == []
    assert reg.apply(parse_resource(_model())).action == "created"


def test_admission_other_rules(local_engram: Engram) -> None:
    reg = Registry(local_engram)
    policy = copy.deepcopy(POLICY)
    policy["spec"]["rules"] = {"requiredLabels": ["owner"], "maxReplicas": 2, "allowedEngines": ["vllm"]}
    reg.apply(parse_resource(policy))
    with pytest.raises(AdmissionError) as err:
        reg.apply(parse_resource(_model(replicas=3)))
    msg = err.value.message
    assert "requiredLabels" in msg and "maxReplicas" in msg and "allowedEngines" in msg


def test_require_gitops_guardrail(local_engram: Engram) -> None:
    reg = Registry(local_engram, require_gitops=True)
    with pytest.raises(PermissionDeniedError, match="require_gitops"):
        reg.apply(parse_resource(_model()))
    assert reg.apply(parse_resource(_model()), source="gitops").action == "created"
    with pytest.raises(PermissionDeniedError):
        reg.delete("Model", "tiny")


def test_a_stored_record_that_no_longer_validates(engram: Engram, caplog: pytest.LogCaptureFixture) -> None:
    """Listing skips it with a warning, get explains it, apply repairs it, delete needs no valid spec."""
    from mnemos.errors import ValidationError

    reg = Registry(engram)
    reg.apply(parse_resource(_model()))
    bad = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "neg", "generation": 1},
           "spec": {"steps": [{"name": "a", "script": "echo", "timeout": "-5000ms"}]}}  # fmt: skip
    engram.create_json("registry/Pipeline/neg/00000001.json", bad)
    with caplog.at_level("WARNING", logger="mnemos.genome.registry"):
        assert [r.name for r in reg.list()] == ["tiny"]
        assert reg.history("Pipeline", "neg") == []
    assert "registry/Pipeline/neg" in caplog.text
    with pytest.raises(ValidationError, match="no longer valid.*mnemos delete pipeline neg"):
        reg.get("Pipeline", "neg")
    good = copy.deepcopy(bad)
    good["spec"]["steps"][0]["timeout"] = "5s"
    del good["metadata"]["generation"]
    repaired = reg.apply(parse_resource(good))
    assert (repaired.action, repaired.resource.generation) == ("configured", 2)
    engram.create_json("registry/Pipeline/neg/00000003.json", bad)
    gone = reg.delete("Pipeline", "neg")
    assert (type(gone).__name__, gone.name, gone.generation) == ("Pipeline", "neg", 3)
    with pytest.raises(NotFoundError):
        reg.get("Pipeline", "neg")


@pytest.mark.parametrize("seconds", [1e-07, 0.0005, 0.0015, 0.001, 0.3, 1.5, 90.0, 123.456, 1e20])
def test_a_duration_stored_parses_back_to_itself(seconds: float) -> None:
    from pydantic import TypeAdapter

    from mnemos._model import PositiveDuration

    adapter = TypeAdapter(PositiveDuration)
    assert adapter.validate_python(adapter.dump_python(seconds, mode="json")) == seconds
