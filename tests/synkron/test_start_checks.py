"""Checks a run passes when it starts, and the step cache key: a ``null`` param only where the
default is ``null``, and a step that writes its run id is never served another run's output."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mnemos.engram import Engram
from mnemos.errors import ValidationError
from mnemos.genome import parse_resource
from mnemos.soul.identity import Principal
from mnemos.synkron._plan import check_pipeline, merge_params, prepare
from mnemos.synkron.runner import cache_key

ALICE, BOB = Principal("alice", "developer", "apikey", team="red"), Principal("bob", "developer", "apikey")


def _pipeline(steps: list[dict[str, Any]], params: dict[str, Any]) -> Any:
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p", "generation": 1},
           "spec": {"params": params, "steps": steps}}  # fmt: skip
    return parse_resource(doc)


@pytest.fixture()
def world(tmp_path: Path) -> SimpleNamespace:
    engram = Engram(str(tmp_path / "engram"))
    registry = SimpleNamespace(get=lambda kind, name: SimpleNamespace(generation=1))
    return SimpleNamespace(engram=engram, registry=registry, connected=False, settings=None)


SCRIPT = _pipeline([{"name": "echo", "call": "json:dumps", "params": {"obj": "${text}", "n": "${count}"},
                     "outputs": [{"name": "o"}]}],
                   {"text": "hello", "count": 1, "ratio": 0.5, "on": True, "tags": [], "opts": {},
                    "any": None})  # fmt: skip


@pytest.mark.parametrize("name", ["text", "count", "ratio", "on", "tags", "opts"])
def test_null_is_refused_for_a_param_whose_default_is_not_null(world: Any, name: str) -> None:
    for check in (lambda: merge_params(SCRIPT, {name: None}), lambda: check_pipeline(SCRIPT, {name: None}),
                  lambda: prepare(world, SCRIPT, {name: None}, principal=BOB)):  # fmt: skip
        with pytest.raises(ValidationError) as refused:
            check()
        assert (refused.value.status, refused.value.param) == (422, f"params.{name}")
        assert "got null" in refused.value.message, refused.value.message


@pytest.mark.parametrize(("name", "value"), [("text", "\x00x"), ("tags", ["a", "b\x00"]), ("opts", {"k\x00": 1}),
                                           ("any", {"a": ["\x00"]})])  # fmt: skip
def test_a_nul_in_a_param_is_refused_before_the_run_starts(world: Any, name: str, value: Any) -> None:
    """A NUL reached the worker, whose process arguments cannot carry one: the run failed there
    ("embedded null byte") after it was accepted."""
    for check in (lambda: merge_params(SCRIPT, {name: value}), lambda: prepare(world, SCRIPT, {name: value},
                                                                                 principal=BOB)):  # fmt: skip
        with pytest.raises(ValidationError) as refused:
            check()
        assert (refused.value.status, refused.value.param) == (422, f"params.{name}")
        assert "holds a NUL character" in refused.value.message


def test_a_param_whose_default_is_null_takes_null_and_any_type(world: Any) -> None:
    for value in (None, "x", 3, [1], {"a": 1}, True):
        assert merge_params(SCRIPT, {"any": value})["any"] == value
    assert prepare(world, SCRIPT, {"any": None}, principal=BOB)["params"]["any"] is None
    assert merge_params(SCRIPT, {"count": "3", "text": 4}) | {"any": None} == {
        "text": "4", "count": 3, "ratio": 0.5, "on": True, "tags": [], "opts": {}, "any": None}  # fmt: skip


def _key(world: Any, pipeline: Any, principal: Any, params: dict[str, Any] | None = None) -> str:
    state = prepare(world, pipeline, params, principal=principal)
    return cache_key(state, pipeline.spec.steps[0].name, {})


@pytest.mark.parametrize(
    "uses",
    [
        {"params": {"obj": "made by ${RUN_ID}"}},
        {"params": {"obj": ["${RUN_ID}"]}},
        {"params": {"obj": "import os; print(os.environ['MNEMOS_RUN_ID'])"}},
    ],
)
def test_a_step_that_uses_its_run_id_is_never_served_another_runs_output(world: Any, uses: dict[str, Any]) -> None:
    """Its output may name its run: its cache key includes the run id, so two runs of one principal
    have two keys too."""
    step = {"name": "stamp", "call": "json:dumps", "outputs": [{"name": "o"}], **uses}
    pipeline = _pipeline([step], {})
    alice, bob, again = _key(world, pipeline, ALICE), _key(world, pipeline, BOB), _key(world, pipeline, BOB)
    assert len({alice, bob, again}) == 3


def test_a_step_that_does_not_use_its_run_id_keeps_one_key_across_runs(world: Any) -> None:
    plain = _pipeline([{"name": "s", "call": "json:dumps", "params": {"obj": "${PIPELINE}: $${RUN_ID}"},
                        "outputs": [{"name": "o"}]}], {"x": 1})  # fmt: skip
    assert _key(world, plain, BOB) == _key(world, plain, BOB)  # a literal $${RUN_ID} is not the run id
    assert _key(world, plain, ALICE) != _key(world, plain, BOB)  # the cache is each principal's own
    assert _key(world, plain, BOB, {"x": 2}) == _key(world, plain, BOB)  # x is not used by the step
    state = prepare(world, plain, None, principal=BOB)
    assert cache_key(state, "s", {}) == cache_key({**state, "id": "p-20260101-000000-ffff"}, "s", {})
