"""A run whose model step calls a model its principal may not call is refused when it starts, naming
the step: it used to start, run (and meter) the steps before that one, and fail only there."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mnemos.engram import Engram
from mnemos.errors import ModelAccessError
from mnemos.genome import Registry, parse_resource
from mnemos.soul.identity import Principal
from mnemos.synkron import _state
from mnemos.synkron._plan import prepare

LISTED = Principal("carol", "developer", "apikey", credential_id="k1", models=("tiny-chat",))
PLAIN = Principal("dave", "developer", "apikey", credential_id="k2", team="blue")

PIPELINE = parse_resource({
    "apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "gen-index", "generation": 1},
    "spec": {"params": {"space": "mine"}, "steps": [
        {"name": "make", "call": "json:dumps", "params": {"obj": "x"}, "outputs": [{"name": "rows"}]},
        {"name": "gen", "modelRef": "tiny-chat", "input": "${rows}", "outputs": [{"name": "results"}]},
        {"name": "index", "modelRef": "minilm", "index": {"space": "${space}", "input": "${results}",
                                                          "textField": "prompt"}},
    ]},
})  # fmt: skip


@pytest.fixture()
def world(tmp_path: Path) -> SimpleNamespace:
    engram = Engram(str(tmp_path / "engram"))
    registry = SimpleNamespace(get=lambda kind, name: SimpleNamespace(generation=1))
    return SimpleNamespace(engram=engram, registry=registry, connected=False, settings=None)


def _refused(world: Any, principal: Any) -> ModelAccessError:
    with pytest.raises(ModelAccessError) as refused:
        prepare(world, PIPELINE, {"space": "carols"}, principal=principal)
    assert _state.list_runs(world.engram) == []  # nothing stored: no step ran
    return refused.value


def test_a_model_outside_the_keys_model_list_is_refused_when_the_run_starts(world: Any) -> None:
    error = _refused(world, LISTED)
    assert (error.status, error.param) == (403, "spec.steps[2].modelRef")
    assert "spec.steps[2] (index).modelRef" in error.message and "`minilm`" in error.message, error.message


def test_a_model_a_policy_closes_to_the_caller_is_refused_when_the_run_starts(world: Any) -> None:
    Registry(world.engram).apply(parse_resource({
        "apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": "chat-for-red"},
        "spec": {"access": [{"models": ["tiny-chat"], "teams": ["red"]}]},
    }))  # fmt: skip
    error = _refused(world, PLAIN)
    assert (error.status, error.param) == (403, "spec.steps[1].modelRef")
    assert "(gen).modelRef" in error.message and "`tiny-chat`" in error.message, error.message


def test_a_principal_that_may_call_every_model_starts_the_run(world: Any) -> None:
    state = prepare(world, PIPELINE, {"space": "carols"}, principal=PLAIN)
    assert state["status"] == "pending" and state["principal"] == "dave"
    local = prepare(world, PIPELINE, {"space": "local-space"})  # the local admin: no rule holds it
    assert local["status"] == "pending"
