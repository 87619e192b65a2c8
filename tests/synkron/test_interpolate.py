"""`${NAME}` interpolation and pipeline validation, without a cluster."""

from __future__ import annotations

import pytest

from mnemos.errors import ValidationError
from mnemos.genome import parse_resource
from mnemos.genome.pipeline import names_in
from mnemos.synkron._interpolate import interpolate
from mnemos.synkron._plan import build_steps, merge_params


def test_interpolation_types_escapes_and_errors() -> None:
    doc = {"n": "${limit}", "s": "top ${limit} of ${RUN_ID}", "lit": "$${HOME}", "list": ["${x}"]}
    out = interpolate(doc, {"limit": 8, "RUN_ID": "r1", "x": "y"})
    assert out == {"n": 8, "s": "top 8 of r1", "lit": "${HOME}", "list": ["y"]}
    assert names_in(doc) == {"limit", "RUN_ID", "x"}
    assert interpolate("${a} ${b}", {"a": 1}, keep={"b"}) == "1 ${b}"
    with pytest.raises(ValidationError, match=r"steps\[0\].params.n: unknown variable \$\{nope\}") as err:
        interpolate({"n": "${nope}"}, {"limit": 1}, where="steps[0].params")
    assert err.value.param == "steps[0].params.n"


def test_values_in_a_longer_text_are_spelled_as_json() -> None:
    """A boolean, null, list or mapping put into a text reads as the pipeline wrote it (``true``,
    ``["a", "b"]``), not as Python's repr (``True``, ``['a', 'b']``); in a script, quoted as one word."""
    values = {"on": True, "off": False, "none": None, "tags": ["a", "é"], "opts": {"k": 1}, "n": 3, "x": 0.5}
    text = "${on} ${off} ${none} ${tags} ${opts} ${n} ${x}"
    assert interpolate(text, values) == 'true false null ["a", "é"] {"k": 1} 3 0.5'
    assert interpolate({"script": "echo ${on} ${tags}"}, values) == {"script": """echo true '["a", "é"]'"""}
    assert interpolate("${on}", values) is True  # alone: the value itself


def _pipeline(steps: list[dict], params: dict | None = None):
    return parse_resource({"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p"},
                           "spec": {"params": params or {}, "steps": steps}})  # fmt: skip


def test_defaults_and_checks_of_step_definitions() -> None:
    pipeline = _pipeline(
        [
            {"name": "prep", "call": "m:f", "outputs": [{"name": "prompts"}]},
            {"name": "gen", "modelRef": "tiny", "params": {"maxTokens": 4}},
            {"name": "idx", "index": {"space": "s", "input": "${gen}"}},
        ]
    )
    order, steps = build_steps(pipeline, merge_params(pipeline, None))
    assert order == ["prep", "gen", "idx"]
    assert steps["gen"]["definition"]["input"] == "${prompts}"  # the upstream step's only output
    assert steps["gen"]["outputs"] == ["gen"] and steps["idx"]["outputs"] == ["idx"]
    assert steps["idx"]["definition"]["modelRef"] == "minilm"
    with pytest.raises(ValidationError, match=r"spec.steps\[1\] \(gen\).params: unknown param 'temprature'"):
        bad = _pipeline([{"name": "prep", "call": "m:f", "outputs": [{"name": "p"}]},
                         {"name": "gen", "modelRef": "tiny", "params": {"temprature": 1}}])  # fmt: skip
        build_steps(bad, {})
    with pytest.raises(ValidationError, match=r"spec.steps\[0\] \(gen\).input: an infer step needs an input"):
        build_steps(_pipeline([{"name": "gen", "modelRef": "tiny"}]), {})
    with pytest.raises(ValidationError, match="already used"):
        build_steps(_pipeline([{"name": "a", "call": "m:f", "outputs": [{"name": "x"}]},
                               {"name": "b", "call": "m:g", "outputs": [{"name": "x"}]}]), {})  # fmt: skip
    with pytest.raises(ValidationError, match=r"spec.steps\[0\] \(a\).call: use 'module:function'"):
        build_steps(_pipeline([{"name": "a", "call": "nocolon"}]), {})


def test_the_seed_pipeline_validates_as_written() -> None:
    from pathlib import Path

    from mnemos.genome import load_paths

    (seed,) = load_paths([Path(__file__).resolve().parents[2] / "docs" / "seed" / "text-gen-artifacts.yaml"])
    assert [s.type for s in seed.spec.steps] == ["script", "infer", "script"]
    (runnable,) = load_paths([Path(__file__).resolve().parents[2] / "pipelines" / "text-gen-artifacts.yaml"])
    assert [s.type for s in runnable.spec.steps] == ["python", "infer", "index"]


def test_params_take_the_type_of_their_default() -> None:
    params = {"limit": 3, "rate": 0.5, "on": False, "name": "x", "tags": [], "opts": {}}
    pipeline = _pipeline([{"name": "a", "call": "m:f"}], params=params)
    merged = merge_params(pipeline, {"limit": "4", "rate": "1e-3", "on": "true", "name": 7, "tags": "[a, b]"})
    assert merged == {"limit": 4, "rate": 0.001, "on": True, "name": "7", "tags": ["a", "b"], "opts": {}}
    for key, value, expected in [("limit", "abc", "an integer"), ("limit", 2.5, "an integer"),
                                 ("on", "maybe", "a boolean"), ("tags", "x", "a list"), ("opts", [1], "a mapping")]:
        with pytest.raises(ValidationError, match=f"param '{key}': expected {expected}") as err:
            merge_params(pipeline, {key: value})
        assert err.value.param == f"params.{key}"


def test_errors_name_the_step_and_the_field() -> None:
    pipeline = _pipeline([{"name": "first", "script": "echo 1"},
                          {"name": "second", "call": "m:f", "params": {"a": {"deep": ["x", "${missing}"]}}}])
    with pytest.raises(ValidationError, match=r"^pipeline/p: spec.steps\[1\] \(second\).params.a.deep\[1\]: "
                                              r"unknown variable \$\{missing\} \(known: PIPELINE, RUN_ID\)$") as err:
        build_steps(pipeline, merge_params(pipeline, None))
    assert err.value.param == "spec.steps[1].params.a.deep[1]"
