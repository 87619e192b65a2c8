"""The phase a Model's status record shows for Serve's live replica counts (no cluster: the record is pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnemos.relay.model_status import status_record, with_replicas


@pytest.mark.parametrize(
    ("ready", "desired", "phase", "reason"),
    [
        (1, 1, "Ready", "Ready"),
        (2, 2, "Ready", "Ready"),
        (1, 2, "Ready", "ReplicasUnavailable"),  # still serving on the replica that is left
        (0, 1, "Deploying", "NoReadyReplica"),  # the only replica died: not Ready until Serve replaces it
        (0, 3, "Deploying", "NoReadyReplica"),
    ],
)
def test_phase_follows_running_replicas(ready: int, desired: int, phase: str, reason: str) -> None:
    route = with_replicas({"status": "ready", "reason": "Ready", "generation": 4}, (ready, desired))
    record = status_record("tiny-chat", route)
    assert (record["phase"], record["reason"], record["ready_replicas"]) == (phase, reason, ready)
    assert record["served_generation"] == (4 if phase == "Ready" else None)
    if reason != "Ready":
        assert record["message"] == f"{ready} of {desired} replicas are running; Serve is starting the others"


def test_stopped_and_failed_models_count_no_replica() -> None:
    stopped = status_record("m", with_replicas({"status": "stopped", "reason": "ScaledToZero", "desired_replicas": 0},
                                               (1, 1)))  # fmt: skip
    assert (stopped["phase"], stopped["reason"], stopped["ready_replicas"]) == ("Stopped", "ScaledToZero", 0)
    failed = status_record("m", with_replicas({"status": "failed", "reason": "ArtifactMissing", "message": "x"}, None))
    assert (failed["phase"], failed["reason"], failed["message"]) == ("Failed", "ArtifactMissing", "x")


def test_a_missing_artifact_names_the_ref_and_the_fix_but_not_where_engram_is(tmp_path: Path) -> None:
    """Every role reads model status events: the ENGRAM folder or bucket stays out of them."""
    from mnemos.engram import Engram
    from mnemos.genome import parse_resource
    from mnemos.relay.model_status import artifact_problem

    root = tmp_path / "secret-root"
    engram = Engram(str(root))
    doc = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": "tiny-chat"},
           "spec": {"family": "t", "version": "1", "artifact": {"uri": "engram://models/tiny-chat"},
                    "runtime": {"engine": "transformers"}}}  # fmt: skip
    problem = artifact_problem(parse_resource(doc), engram)
    assert problem is not None and "has no ref 'models/tiny-chat'" in problem and "mnemos model init-tiny" in problem
    assert "secret-root" not in problem and str(tmp_path) not in problem


def test_get_model_shows_a_rollout_and_the_generation_still_serving() -> None:
    """While generation 4 rolls out, generation 3 answers: `mnemos get model` said "4 … True" with
    no reason, as if 4 were serving. It now says so, and a Ready model's other reasons show."""
    from tests_support import model_doc

    from mnemos.cli.resources import _model_row
    from mnemos.genome import parse_resource

    doc = model_doc("m")
    doc["metadata"]["generation"] = 4
    model = parse_resource(doc)
    ready = {"phase": "Ready", "ready_replicas": 1, "desired_replicas": 1}
    rolling = {**ready, "reason": "Rolling", "served_generation": 3}
    assert _model_row(model, rolling)[1:] == ("4 (serving 3)", "echo", "True", "1/1", "Rolling")
    assert _model_row(model, {**ready, "reason": "Ready", "served_generation": 4})[1:] == (4, "echo", "True", "1/1", "")
    failed = {"phase": "Failed", "reason": "ArtifactMissing", "ready_replicas": 0, "desired_replicas": 1}
    assert _model_row(model, failed)[3:] == ("False", "0/1", "ArtifactMissing")
    assert _model_row(model, None)[3:] == ("False", "0/-", "Pending")
