"""A pipeline's step order and size: ``order()`` rescanned every pending step against a list of the
placed ones (cubic: a 5,000-step document took minutes of a gateway thread to validate, on every
write and every run), and no count was refused. It is a topological sort now, in the same order
(among ready steps, the first in the file), and a pipeline has at most ``MAX_STEPS`` steps."""

from __future__ import annotations

import pytest

from mnemos.errors import ValidationError
from mnemos.genome import parse_resource
from mnemos.genome.pipeline import MAX_STEPS


def _pipeline(steps: list[dict]) -> dict:
    return {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p"},
            "spec": {"steps": steps}}  # fmt: skip


def _step(name: str, needs: list[str] | None = None) -> dict:
    step = {"name": name, "type": "script", "script": "true"}
    if needs is not None:
        step["needs"] = needs
    return step


def test_steps_run_in_file_order_among_those_ready() -> None:
    steps = [_step("report", ["train", "fetch"]), _step("train", ["prep"]), _step("fetch", []),
             _step("prep", ["fetch"]), _step("lint", []), _step("after-lint")]  # (no needs: the previous step)
    assert parse_resource(_pipeline(steps)).spec.order() == ["fetch", "prep", "train", "report", "lint", "after-lint"]


def test_a_cycle_names_the_steps_it_holds_back() -> None:
    steps = [_step("a", []), _step("b", ["c"]), _step("c", ["b"]), _step("d", ["c"])]
    with pytest.raises(ValidationError, match="steps form a cycle: b, c, d"):
        parse_resource(_pipeline(steps))


def test_a_wide_and_deep_pipeline_at_the_limit_is_valid_and_one_more_step_is_refused() -> None:
    names = [f"s{i}" for i in range(MAX_STEPS)]
    steps = [_step(name, names[max(0, i - 3):i]) for i, name in enumerate(names)]  # each needs the three before
    assert parse_resource(_pipeline(steps)).spec.order() == names
    with pytest.raises(ValidationError) as refused:
        parse_resource(_pipeline([*steps, _step("one-more")]))
    assert refused.value.param == "spec.steps" and str(MAX_STEPS) in refused.value.message
