"""A caller without the verb ``execute`` (a developer over HTTP) resumes a run only while its steps
are still those of the registered pipeline: after an operator deleted the Pipeline (or changed its
steps, say to fix an unsafe script), ``POST /v1/runs/{id}/resume`` ran the old steps again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mnemos.engram import Engram
from mnemos.errors import PermissionDeniedError
from mnemos.genome import Registry, parse_resource
from mnemos.soul.identity import Principal
from mnemos.synkron._plan import check_resume, prepare

DEV = Principal("alice", "developer", "apikey", credential_id="k1")
OPERATOR = Principal("opal", "operator", "apikey", credential_id="k2")


def _doc(script: str, labels: dict[str, str] | None = None) -> Any:
    return parse_resource({
        "apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline",
        "metadata": {"name": "resumable", "labels": labels or {}},
        "spec": {"params": {"n": 1}, "steps": [{"name": "a", "script": script}]},
    })  # fmt: skip


@pytest.fixture()
def world(tmp_path: Path) -> SimpleNamespace:
    engram = Engram(str(tmp_path / "engram"))
    registry = Registry(engram)
    registry.apply(_doc("echo ${n}"))
    return SimpleNamespace(engram=engram, registry=registry, connected=False, settings=None)


def test_a_run_of_an_unchanged_pipeline_resumes(world: Any) -> None:
    state = prepare(world, "resumable", {"n": 2}, principal=DEV)
    world.registry.apply(_doc("echo ${n}", labels={"team": "red"}))  # a new generation, the same steps
    check_resume(world, state, DEV)


@pytest.mark.parametrize("change", ["deleted", "changed"])
def test_a_developer_may_not_resume_a_run_whose_steps_are_no_longer_registered(world: Any, change: str) -> None:
    state = prepare(world, "resumable", {"n": 2}, principal=DEV)
    if change == "deleted":
        world.registry.delete("Pipeline", "resumable")
    else:
        world.registry.apply(_doc("echo fixed ${n}"))
    with pytest.raises(PermissionDeniedError) as refused:
        check_resume(world, state, DEV)
    assert (refused.value.status, refused.value.param) == (403, "pipeline")
    assert state["id"] in refused.value.message and "start a new run" in refused.value.message
    check_resume(world, state, OPERATOR)  # execute: an operator may run any code


def test_a_run_whose_queue_was_removed_since_is_refused_at_resume(world: Any) -> None:
    """A queue an operator removed after the run started: its steps' jobs would be refused one by
    one as they came up; resume refuses at once, naming the step's queue, as a new run does."""
    from mnemos.errors import ValidationError

    world.registry.apply(parse_resource({
        "apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "queued"},
        "spec": {"steps": [{"name": "a", "script": "echo a", "queue": "batch"}]},
    }))  # fmt: skip
    cortex = {"queues": {"default": {}, "batch": {}}, "pools": []}  # as CORTEX's stats() answers (a stand-in)
    world.connected, world.jobs = True, SimpleNamespace(stats=lambda: cortex)
    state = prepare(world, "queued", {}, principal=OPERATOR)
    del cortex["queues"]["batch"]
    with pytest.raises(ValidationError) as refused:
        check_resume(world, state, OPERATOR)
    assert refused.value.param == "spec.steps[0].queue" and "'batch' is not declared" in refused.value.message
