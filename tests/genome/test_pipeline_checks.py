"""A Pipeline a run would refuse is refused on every write, with one error: ``mnemos validate`` and
``apply``, the Python API (``client.apply``, ``Registry.apply``) and ``PUT /apis/…`` (422 naming
the field). The checks live in GENOME admission (``mnemos.genome.pipeline.check_steps``), the path
every write takes; they once ran in the CLI only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from genome_support import control_routes
from tests_support import run_cli

from mnemos.engram import Engram
from mnemos.errors import ValidationError
from mnemos.genome import Registry, parse_resource
from mnemos.genome import pipeline as genome_pipeline


def pipeline(name: str, *steps: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"params": params or {}, "steps": list(steps)}}  # fmt: skip


# name → (document, the message every path gives, its param)
BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown-variable": (
        pipeline("unk", {"name": "first", "script": "echo 1"}, {"name": "second", "script": "echo ${missing}"}),
        "pipeline/unk: spec.steps[1] (second).script: unknown variable ${missing} (known: PIPELINE, RUN_ID)",
        "spec.steps[1].script",
    ),
    "unknown-infer-param": (
        pipeline(
            "par",
            {"name": "prep", "call": "m:f", "outputs": [{"name": "p"}]},
            {"name": "gen", "modelRef": "tiny", "params": {"temprature": 1}},
        ),
        "pipeline/par: spec.steps[1] (gen).params: unknown param 'temprature' (known: max_tokens,",
        "spec.steps[1].params.temprature",
    ),
    "output-without-needs": (
        pipeline(
            "needs",
            {"name": "a", "call": "m:f", "outputs": [{"name": "x"}]},
            {"name": "b", "needs": [], "call": "m:g", "params": {"data": "${x}"}},
        ),
        "pipeline/needs: spec.steps[1] (b).params.data: uses ${x}, the output of step 'a', without depending on it",
        "spec.steps[1].needs",
    ),
    "builtin-as-param": (  # a run's caller set ${RUN_ID}: another run's id in its outputs' paths
        pipeline("bip", {"name": "a", "script": "echo ${RUN_ID}"}, params={"RUN_ID": "x"}),
        "pipeline/bip: spec.params: 'RUN_ID' is the name of a builtin every step reads (${RUN_ID}, set by the run)",
        "spec.params.RUN_ID",
    ),
    "timeout-over-30-days": (
        pipeline(
            "long",
            {"name": "quick", "script": "echo", "timeout": "1h"},
            {"name": "slow", "script": "sleep 1", "timeout": "31d"},
        ),
        "pipeline/long: spec.steps[1] (slow).timeout: 31d is longer than a step may run: at most 30d (2592000 s)",
        "spec.steps[1].timeout",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_the_python_api_refuses_what_the_cli_refuses(tmp_path: Path, case: str) -> None:
    from mnemos.client import Client
    from mnemos.config import load_settings

    doc, message, param = BAD[case]
    client = Client(load_settings(engram={"uri": str(tmp_path / "engram")}))
    for write in (lambda: client.apply([doc]), lambda: client.admit([doc]),
                  lambda: Registry(client.engram).apply(parse_resource(doc))):  # fmt: skip
        with pytest.raises(ValidationError) as err:
            write()
        assert message in err.value.message and err.value.param == param, (err.value.message, err.value.param)
    assert client.engram.list("registry") == []  # nothing stored


@pytest.mark.parametrize("case", sorted(BAD))
def test_validate_and_apply_give_the_same_error(tmp_path: Path, case: str, capsys, monkeypatch) -> None:
    doc, message, _ = BAD[case]
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    for verb in ("validate", "apply"):
        _, err = run_cli(capsys, verb, "-f", "p.yaml", code=2)
        assert err.startswith(f"error: {message}"), err
    assert not (tmp_path / "engram" / "registry").exists()


def test_a_timeout_of_30_days_is_accepted_and_the_limit_is_cortexs(tmp_path: Path) -> None:
    registry = Registry(Engram(str(tmp_path / "engram")))
    over = pipeline("month", {"name": "a", "script": "echo", "timeout": 30 * 86400 + 1})
    with pytest.raises(ValidationError, match=r"spec.steps\[0\] \(a\).timeout: 2592001s is longer than a step may"):
        registry.apply(parse_resource(over))
    doc = pipeline("month", {"name": "a", "script": "echo", "timeout": "30d"},
                   {"name": "b", "script": "echo", "timeout": 30 * 86400})  # fmt: skip
    assert registry.apply(parse_resource(doc)).action == "created"
    from mnemos.cortex.job import MAX_JOB_TIMEOUT_S

    assert genome_pipeline.MAX_STEP_TIMEOUT_S == MAX_JOB_TIMEOUT_S


def test_a_stored_pipeline_that_fails_the_checks_still_reads_and_deletes(tmp_path: Path) -> None:
    """One stored before the checks were made on writes (a 31-day timeout was once accepted)."""
    engram = Engram(str(tmp_path / "engram"))
    doc = pipeline("old", {"name": "a", "script": "echo", "timeout": "31d"})
    engram.write_json("registry/Pipeline/old/00000001.json", {**doc, "metadata": {"name": "old", "generation": 1}})
    registry = Registry(engram)
    assert registry.get("Pipeline", "old").spec.steps[0].timeout == 31 * 86400
    assert [r.name for r in registry.list("Pipeline")] == ["old"]
    registry.delete("Pipeline", "old")


class _Open:
    """RELAY's edge with authentication off: every verb is allowed."""

    async def admit(self, request: Any, verb: str) -> None:
        return None


@pytest.fixture()
def control_api(ray_cluster: None, tmp_path: Path) -> Any:
    """The control-plane routes in a FastAPI app, writing through the real ``genome`` actor."""
    with control_routes(tmp_path, _Open()) as http:
        yield http


def test_put_and_post_refuse_it_with_422_naming_the_field(control_api: Any, tmp_path: Path) -> None:
    base = "/apis/synkron.mnemos.dev/v1/pipelines"
    for case in sorted(BAD):
        doc, message, param = BAD[case]
        name = doc["metadata"]["name"]
        for method, path in (("PUT", f"{base}/{name}"), ("POST", base), ("POST", f"{base}:validate"),
                             ("POST", f"{base}:diff")):  # (a diff said "create" for what apply refuses)
            answer = control_api.request(method, path, json=doc)
            assert answer.status_code == 422, (case, method, path, answer.text)
            error = answer.json()["error"]
            assert message in error["message"] and error["param"] == param, (case, error)
    assert Engram(str(tmp_path / "engram")).list("registry") == []
    good = pipeline("fine", {"name": "a", "script": "echo", "timeout": "30d"})
    answer = control_api.put(f"{base}/fine", json=good)
    assert answer.status_code == 200 and answer.json()["action"] == "created", answer.text


@pytest.mark.parametrize("where", ["step", "output"])
@pytest.mark.parametrize("name", ["../a", "a/b", "", ".", "-x", "a b", "x" * 64, "a\nb"])
def test_step_and_output_names_are_names_not_paths(where: str, name: str) -> None:
    """A step's or output's name is a ``${name}`` and one segment of an ENGRAM key: ``../x`` was once
    stored and failed only when a run wrote ``runs/<run>/../x``."""
    step = {"name": name, "script": "true"} if where == "step" else {"name": "a", "script": "true",
                                                                      "outputs": [{"name": name}]}  # fmt: skip
    with pytest.raises(ValidationError) as refused:
        parse_resource(pipeline("names", step))
    field = "spec.steps.0.name" if where == "step" else "spec.steps.0.outputs.0.name"
    assert refused.value.param == field and "is not a name: use letters, digits" in refused.value.message
    assert parse_resource(pipeline("names", {"name": "ok_1.x-y", "script": "true", "outputs": [{"name": "_o.2"}]}))
