"""A caller's parameters are data, whatever exists on the gateway host (docs/guides/security.md,
"Pipelines: who may run scripts"): for a caller without ``execute``, a value where a step reads an
input file must be an ENGRAM ref (refused alike whether or not a file of that name exists, and no
gateway path is shown), other values in python params are never snapshotted, and a string starting
with ``-`` reaches a script only after ``--``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from security_support import SCRIPT_PIPELINE, Gateway

from mnemos.engram import Engram
from mnemos.errors import NotFoundError, ValidationError
from mnemos.genome import parse_resource
from mnemos.soul.identity import Principal
from mnemos.synkron import _state
from mnemos.synkron._plan import check_resume, prepare

DEV, OPERATOR = Principal("dana", "developer", "apikey"), Principal("olga", "operator", "apikey")
DANAS_RUN = "p-20260101-000000-da1a"


def _pipeline(steps: list[dict[str, Any]], params: dict[str, Any]) -> Any:
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p", "generation": 1},
           "spec": {"params": params, "steps": steps}}  # fmt: skip
    return parse_resource(doc)


PYTHON = _pipeline([{"name": "read", "call": "json:dumps", "params": {"obj": "${source}"}, "outputs": [{"name": "o"}]}],
                   {"source": "plain text"})  # fmt: skip
INFER = _pipeline([{"name": "gen", "modelRef": "m", "input": "${source}"}], {"source": f"runs/{DANAS_RUN}/out"})
SCRIPT = _pipeline([{"name": "grep", "script": "grep -c ${pattern} data.txt; exit ${code}",
                     "outputs": [{"name": "o"}]}], {"pattern": "x", "code": 0})  # fmt: skip
GUARDED = _pipeline([{"name": "grep", "script": "grep -c -- ${pattern} data.txt", "outputs": [{"name": "o"}]}],
                    {"pattern": "x"})  # fmt: skip


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """An ENGRAM with dana's finished run, and a working directory (the gateway's) holding files."""
    engram = Engram(str(tmp_path / "engram"))
    engram.write_json(_state.state_key(DANAS_RUN), {"id": DANAS_RUN, "principal": "dana", "status": "succeeded"})
    engram.set_ref(f"runs/{DANAS_RUN}/out", engram.put(b'{"prompt": "hi"}\n'))
    cwd = tmp_path / "gateway"
    cwd.mkdir()
    for name in ("exists.jsonl", "notes"):
        (cwd / name).write_text('{"prompt": "GATEWAY-PRIVATE"}\n')
    monkeypatch.chdir(cwd)
    registry = SimpleNamespace(get=lambda kind, name: SimpleNamespace(generation=1))
    return SimpleNamespace(engram=engram, registry=registry)


def _refused(world: Any, pipeline: Any, params: dict[str, Any], error: type = ValidationError) -> Any:
    with pytest.raises(error) as refused:
        prepare(world, pipeline, params, principal=DEV)
    return refused.value


@pytest.mark.parametrize("pipeline", [PYTHON, INFER], ids=["python", "infer"])
def test_an_input_file_a_developer_names_is_refused_alike_whether_or_not_it_exists(world: Any, pipeline: Any) -> None:
    exists, absent = (_refused(world, pipeline, {"source": name}) for name in ("exists.jsonl", "absent.jsonl"))
    assert (exists.status, exists.param, exists.message) == (absent.status, absent.param, absent.message)
    assert exists.status == 422 and exists.param == "params.source" and "runs/<run>/<output>" in exists.message
    state = prepare(world, pipeline, {"source": f"runs/{DANAS_RUN}/out"}, principal=DEV)  # an ENGRAM ref: fine
    assert list(state["inputs"]) == [f"runs/{DANAS_RUN}/out"]
    state = prepare(world, pipeline, {"source": "exists.jsonl"}, principal=OPERATOR)  # execute: the gateway's file
    assert state["inputs"]["exists.jsonl"]["digest"] == world.engram.put(Path("exists.jsonl").read_bytes())


def test_a_developers_other_python_values_are_data_never_a_gateway_file(world: Any) -> None:
    for text in ("notes", "absent", "a prompt text"):  # ./notes exists: still the text itself
        state = prepare(world, PYTHON, {"source": text}, principal=DEV)
        assert state["inputs"] == {} and state["steps"]["read"]["inputs"] == []
        assert state["params"]["source"] == text
    assert "notes" in prepare(world, PYTHON, {"source": "notes"}, principal=OPERATOR)["inputs"]


def test_where_the_defaults_give_a_file_a_developers_value_is_read_as_one(world: Any) -> None:
    """``prepare_prompts(source=${source})`` opens whatever it is given: where the pipeline's default
    is a file, a developer's ``notes`` (no data suffix) would be the gateway's ./notes, not data."""
    doc = _pipeline([{"name": "prep", "call": "mnemos.synkron.steps:prepare_prompts",
                      "params": {"source": "${source}", "system": "${system}"}, "outputs": [{"name": "o"}]}],
                    {"source": "exists.jsonl", "system": "be brief"}).dump()  # fmt: skip
    doc["spec"]["files"] = {"exists.jsonl": world.engram.put(b'{"prompt": "applied with it"}\n')}
    files = parse_resource(doc)
    for text in ("notes", "absent", "pyproject.toml"):
        refused = _refused(world, files, {"source": text})
        assert refused.param == "params.source" and "runs/<run>/<output>" in refused.message
    assert prepare(world, files, {"system": "notes"}, principal=DEV)["params"]["system"] == "notes"  # data there
    assert prepare(world, files, {"source": f"runs/{DANAS_RUN}/out"}, principal=DEV)["inputs"]


def test_a_missing_input_file_of_the_pipeline_shows_a_developer_no_gateway_path(world: Any, tmp_path: Path) -> None:
    import yaml

    folder = tmp_path / "pipelines"  # a pipeline file away from the working directory: its folder is searched
    folder.mkdir()
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p"},
           "spec": {"steps": [{"name": "gen", "modelRef": "m", "input": "absent.jsonl"}]}}  # fmt: skip
    (folder / "p.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(NotFoundError) as refused:
        prepare(world, str(folder / "p.yaml"), {}, principal=DEV)
    assert "'absent.jsonl'" in refused.value.message and str(tmp_path) not in refused.value.message
    with pytest.raises(NotFoundError, match=f"looked for {folder}"):  # the operator, who may fix it, is told where
        prepare(world, str(folder / "p.yaml"), {}, principal=OPERATOR)


@pytest.mark.parametrize("value", ["-f/etc/passwd", "--file=/etc/passwd", "-"])
def test_a_developers_value_starting_with_a_dash_reaches_a_script_only_after_dashes(world: Any, value: str) -> None:
    refused = _refused(world, SCRIPT, {"pattern": value})
    assert (refused.status, refused.param) == (422, "params.pattern") and "-- ${pattern}" in refused.message
    assert prepare(world, GUARDED, {"pattern": value}, principal=DEV)["params"]["pattern"] == value
    assert prepare(world, SCRIPT, {"pattern": value}, principal=OPERATOR)["params"]["pattern"] == value
    assert prepare(world, PYTHON, {"source": value}, principal=DEV)["params"]["source"] == value  # not a script


def test_numbers_and_other_values_still_reach_scripts(world: Any) -> None:
    for params in ({"code": -1}, {"pattern": -1}, {"pattern": "-1"}, {"pattern": "-0.5"}, {"pattern": "a -f"},
                   {"pattern": "x; -f"}):  # fmt: skip
        assert prepare(world, SCRIPT, params, principal=DEV)["status"] == "pending", params


def test_resuming_checks_a_dash_value_again(world: Any) -> None:
    world.registry = SimpleNamespace(get=lambda kind, name: SCRIPT if kind == "Pipeline" else None)  # registered
    state = prepare(world, SCRIPT, {"pattern": "-f/etc/passwd"}, principal=OPERATOR)
    state["principal"] = "dana"  # a run of before, with such a value: its developer may not resume it
    with pytest.raises(ValidationError) as refused:
        check_resume(world, state, DEV)
    assert refused.value.param == "params.pattern"
    check_resume(world, state, OPERATOR)


# -- over the gateway ------------------------------------------------------------------------------------------
READER = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "read-prompts"},
          "spec": {"params": {"source": ""}, "steps": [{"name": "prep", "call": "mnemos.synkron.steps:prepare_prompts",
                                                        "params": {"source": "${source}"},
                                                        "outputs": [{"name": "out"}]}]}}  # fmt: skip
SAFE_SCRIPT = {**SCRIPT_PIPELINE, "metadata": {"name": "echo-option"},
               "spec": {**SCRIPT_PIPELINE["spec"],
                        "steps": [{"name": "say", "script": 'set -- ${text}; printf "%s" "$1" > "$MNEMOS_OUTPUT_OUT"',
                                   "outputs": [{"name": "out"}]}]}}  # fmt: skip


def _start(gateway: Gateway, pipeline: str, who: str, params: dict[str, Any]) -> Any:
    return gateway.call("POST", f"/v1/pipelines/{pipeline}/runs", who, json={"params": params})


def _output(gateway: Gateway, run_id: str) -> bytes:
    state = gateway.finished_run(run_id)
    assert state["status"] == "succeeded", state["error"]
    return bytes(gateway.call("GET", f"/v1/runs/{run_id}/outputs/out", "admin").content)


def test_over_the_gateway_a_file_that_exists_and_one_that_does_not_get_the_same_answer(gateway: Gateway) -> None:
    gateway.client.apply([READER])
    assert Path("pipelines/data/prompts.jsonl").is_file()  # in the working directory of the tests, and gateway
    exists = _start(gateway, "read-prompts", "developer", {"source": "pipelines/data/prompts.jsonl"})
    absent = _start(gateway, "read-prompts", "developer", {"source": "pipelines/data/absent.jsonl"})
    assert exists.status_code == absent.status_code == 422, (exists.text, absent.text)
    assert exists.content == absent.content and exists.json()["error"]["param"] == "params.source"
    for text in ("pyproject.toml", "no-such-file.toml"):  # a script's word of data, existing or not
        started = _start(gateway, "echo-text", "developer", {"text": text})
        assert started.status_code == 202, started.text
        assert _output(gateway, started.json()["id"]) == text.encode()
    operator = _start(gateway, "read-prompts", "operator", {"source": "pipelines/data/prompts.jsonl"})
    assert operator.status_code == 202, operator.text  # execute may name the gateway's files


def test_over_the_gateway_a_dash_value_is_refused_unless_the_script_ends_options(gateway: Gateway) -> None:
    gateway.client.apply([SAFE_SCRIPT])
    refused = _start(gateway, "echo-text", "developer", {"text": "-f/etc/passwd"})
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "params.text", refused.text
    assert "-- ${text}" in refused.json()["error"]["message"]
    for pipeline, who, params, out in (("echo-text", "developer", {"text": -1}, b"-1"),
                                       ("echo-option", "developer", {"text": "-f/etc/passwd"}, b"-f/etc/passwd"),
                                       ("echo-text", "operator", {"text": "-n"}, b"-n")):  # fmt: skip
        started = _start(gateway, pipeline, who, params)
        assert started.status_code == 202, started.text
        assert _output(gateway, started.json()["id"]) == out


def test_a_relative_file_not_applied_with_the_pipeline_is_never_the_gateways(world: Any) -> None:
    """A registered pipeline naming data/x.jsonl that did not travel with it (left out at apply: a
    symlink out of its folder, or applied before spec.files) would read the gateway's own file of
    that name: for a developer it is refused alike whether or not the gateway has one."""
    (Path("data")).mkdir()
    Path("data/here.jsonl").write_text('{"prompt": "GATEWAY-CWD-FILE"}\n')
    for name in ("data/here.jsonl", "data/gone.jsonl"):
        pipeline = _pipeline([{"name": "gen", "modelRef": "m", "input": name}], {})
        refused = _refused(world, pipeline, {}, NotFoundError)
        assert refused.param == "spec.steps[0]" and "was not applied with the pipeline" in refused.message
    assert prepare(world, _pipeline([{"name": "gen", "modelRef": "m", "input": "data/here.jsonl"}], {}),
                   {}, principal=OPERATOR)["inputs"]  # execute: the platform's files are the operator's to read


def test_prepare_prompts_as_a_step_reads_only_the_runs_input_files(tmp_path: Path, monkeypatch: Any) -> None:
    """A developer's text (``.ssh/id_rsa``, ``notes``) where a pipeline's default is null reaches the
    step as written, never snapshotted: the shipped step must not open it in the worker's directory."""
    from mnemos.synkron.steps import prepare_prompts

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").write_text("WORKER-PRIVATE\n")
    for text in ("notes", ".ssh/id_rsa", "absent"):  # the same answer whether or not the file exists
        with pytest.raises(ValidationError) as refused:
            prepare_prompts(text, ctx=SimpleNamespace())
        assert refused.value.param == "source" and "WORKER-PRIVATE" not in refused.value.message
    assert prepare_prompts(str(tmp_path / "notes"), ctx=SimpleNamespace()) == [{"id": "0", "prompt": "WORKER-PRIVATE"}]
    assert prepare_prompts("notes")[0]["prompt"] == "WORKER-PRIVATE"  # called from a notebook: its own files
