"""A run reaches other principals' data only as its caller may (docs/guides/security.md, "Ownership"):
another's run outputs named by parameters (404, as for no such run), another's embedding space (403
before the run starts), step jobs counted per team, a viewer's run view without the values behind
its inputs or a credential id, and a cache hit that names another's run only to that run's owner."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from security_support import Gateway

from mnemos.engram import Engram
from mnemos.errors import NotFoundError, PermissionDeniedError
from mnemos.genome import parse_resource
from mnemos.soul.identity import Principal
from mnemos.synkron import _state
from mnemos.synkron._plan import prepare

ALICE, BOB = Principal("alice", "developer", "apikey", team="red"), Principal("bob", "developer", "apikey")
OPERATOR, VIEWER = Principal("olga", "operator", "apikey"), Principal("victor", "viewer", "apikey")
ALICE_RUN, BOB_RUN = "prep-20260101-000000-a11c", "prep-20260101-000000-b0b0"
SECRET = b'{"text": "ALICE-PRIVATE-OUTPUT"}\n'


def _pipeline(steps: list[dict[str, Any]], params: dict[str, Any]) -> Any:
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p", "generation": 1},
           "spec": {"params": params, "steps": steps}}  # fmt: skip
    return parse_resource(doc)


READ = _pipeline([{"name": "read", "call": "json:loads", "params": {"s": "${source}"}, "outputs": [{"name": "o"}]}],
                 {"source": "plain text", "extra": None})  # fmt: skip
BUILT = _pipeline([{"name": "read", "call": "json:loads", "params": {"s": "runs/${run}/out"},
                    "outputs": [{"name": "o"}]}], {"run": "none"})  # fmt: skip
APPROVED = _pipeline([{"name": "read", "call": "json:loads", "params": {"s": f"runs/{ALICE_RUN}/out"},
                       "outputs": [{"name": "o"}]}], {})  # fmt: skip
INDEX = _pipeline([{"name": "ix", "modelRef": "emb", "index": {"space": "${space}", "input": "${source}"}}],
                  {"space": "s", "source": "plain text"})  # fmt: skip


@pytest.fixture()
def world(tmp_path: Path) -> SimpleNamespace:
    """An ENGRAM holding alice's finished run (its output ``out``) and a registry that knows any model."""
    engram = Engram(str(tmp_path / "engram"))
    for run, owner in ((ALICE_RUN, "alice"), (BOB_RUN, "bob")):
        engram.write_json(_state.state_key(run), {"id": run, "principal": owner, "status": "succeeded"})
        engram.set_ref(f"runs/{run}/out", engram.put(SECRET if owner == "alice" else b'{"text": "bob"}\n'))
    registry = SimpleNamespace(get=lambda kind, name: SimpleNamespace(generation=1))
    return SimpleNamespace(engram=engram, registry=registry)


def _refused(world: Any, pipeline: Any, params: dict[str, Any], who: Principal, error: type) -> Any:
    with pytest.raises(error) as refused:
        prepare(world, pipeline, params, principal=who)
    return refused.value


def test_a_param_naming_anothers_run_output_is_404_as_for_no_such_run(world: Any) -> None:
    theirs = _refused(world, READ, {"source": f"runs/{ALICE_RUN}/out"}, BOB, NotFoundError)
    none = _refused(world, READ, {"source": "runs/prep-20990101-000000-dead/out"}, BOB, NotFoundError)
    assert theirs.status == 404 and theirs.param == "params.source" == none.param
    assert theirs.message == f"params.source: run {ALICE_RUN!r} not found"
    assert none.message == "params.source: run 'prep-20990101-000000-dead' not found"
    nested = _refused(world, READ, {"extra": {"a": [f"runs/{ALICE_RUN}/out"]}}, BOB, NotFoundError)
    assert nested.param == "params.extra"  # any value: a script step may hand it on
    built = _refused(world, BUILT, {"run": ALICE_RUN}, BOB, NotFoundError)  # a ref a step builds from a param
    assert built.param == "params.run" and "ALICE" not in built.message
    assert not [k for k in world.engram.list("runs") if k.startswith("runs/p-")]
    digest = world.engram.get_ref(f"runs/{ALICE_RUN}/out")
    for who in (ALICE, OPERATOR):  # its owner and operators read it
        state = prepare(world, READ, {"source": f"runs/{ALICE_RUN}/out"}, principal=who)
        assert state["inputs"][f"runs/{ALICE_RUN}/out"]["digest"] == digest
    assert prepare(world, BUILT, {"run": ALICE_RUN}, principal=ALICE)["inputs"]
    assert prepare(world, APPROVED, {}, principal=BOB)["inputs"]  # written in the registered pipeline


@pytest.mark.parametrize("spelling", ["runs//{run}/out", "runs/{run}//out", "runs/./{run}/out", "/runs/{run}/out",
                                      "runs/{run}/", "runs/{run}"])  # fmt: skip
def test_no_spelling_of_anothers_run_ref_slips_past_the_check(world: Any, spelling: str) -> None:
    refused = _refused(world, READ, {"source": spelling.format(run=ALICE_RUN)}, BOB, NotFoundError)
    assert refused.param == "params.source" and refused.message == f"params.source: run {ALICE_RUN!r} not found"


def test_a_space_is_written_by_its_owner_operators_and_admins_only(world: Any) -> None:
    from mnemos.synkron.spaces import publish

    def write(space: str, owner: str | None) -> None:
        digest = world.engram.put(json.dumps({"space": space, "count": 0, "model": {}}).encode())
        publish(world.engram, digest, run_id="r", step="ix", owner=owner)

    world.engram.write_json("spaces/alice-space/manifest.json", {"space": "alice-space", "owner": "alice"})
    world.engram.write_json("spaces/old-space/manifest.json", {"space": "old-space", "count": 0, "model": {}})
    params, bobs = {"space": "alice-space", "source": f"runs/{ALICE_RUN}/out"}, f"runs/{BOB_RUN}/out"
    refused = _refused(world, INDEX, {"space": "alice-space", "source": bobs}, BOB, PermissionDeniedError)
    assert refused.status == 403 and refused.param == "params.space"
    assert "belongs to another principal" in refused.message and "alice-space" in refused.message
    assert "'alice'" not in refused.message  # bob, whom search tells it does not exist, is not told its owner
    old = _refused(world, INDEX, {**params, "space": "old-space"}, ALICE, PermissionDeniedError)
    assert old.param == "params.space" and "before spaces had owners" in old.message
    assert prepare(world, INDEX, params, principal=ALICE)["status"] == "pending"
    for space in ("alice-space", "old-space"):
        assert prepare(world, INDEX, {**params, "space": space}, principal=OPERATOR)["status"] == "pending"
    assert prepare(world, INDEX, {"space": "bobs-own", "source": bobs}, principal=BOB)["status"] == "pending"
    write("bobs-own", "bob")  # the first writer owns it; an operator's rewrite leaves it bob's
    write("bobs-own", "olga")
    assert world.engram.read_json("spaces/bobs-own/manifest.json")["owner"] == "bob"


def test_step_jobs_carry_the_run_principals_team() -> None:
    from mnemos.cortex.job import TEAM_LABEL
    from mnemos.synkron._jobs import submit_step

    sent: list[dict[str, Any]] = []
    client = SimpleNamespace(jobs=SimpleNamespace(submit=lambda fn, ctx, **kw: sent.append(kw)))
    for team in ("red", ""):
        ctx = {"run_id": "r-1", "meter": {"subject": "alice", "team": team}}
        submit_step(client, ctx, {"name": "s"}, job_id="r-1.s.1", parent="step:r-1/s")
    assert sent[0]["labels"][TEAM_LABEL] == "red" and TEAM_LABEL not in sent[1]["labels"]


def test_a_viewer_sees_no_input_values_step_data_or_credential_id() -> None:
    from mnemos.synkron.http import run_for

    ref, path, digest = f"runs/{ALICE_RUN}/out", "/data/alice-private.jsonl", "sha256:" + "1" * 64
    state = {"id": "r", "principal": "alice", "params": {"source": ref, "space": "alice-private-space"},
             "meter": {"subject": "alice", "team": "red", "limits_key": "key-ALICE-CREDENTIAL"},
             "inputs": {ref: {"digest": digest, "node": None, "path": ref},
                        path: {"digest": digest, "node": f"file:{path}", "path": path}},
             "steps": {"ix": {"name": "ix", "inputs": [ref, path], "status": "succeeded", "cache_key": "c0ffee" * 10,
                              "result": {"items": 3, "items_per_s": 1.0, "space": "alice-private-space"}}}}  # fmt: skip
    shown = run_for(VIEWER, state)
    text = json.dumps(shown)
    for secret in (ref, path, "alice-private-space", "key-ALICE-CREDENTIAL", "c0ffee"):  # cache_key: params' hash
        assert secret not in text, (secret, text)
    assert shown["inputs"] == [{"digest": digest}, {"digest": digest}]  # digests are metadata, as in lineage
    assert shown["steps"]["ix"]["inputs"] == [digest, digest]
    assert shown["steps"]["ix"]["result"] == {"items": 3, "items_per_s": 1.0}
    assert shown["meter"] == {"subject": "alice", "team": "red", "limits_key": None}
    assert {"inputs", "steps.ix.inputs", "steps.ix.result", "steps.ix.cache_key", "meter.limits_key"} <= set(
        shown["withheld"])
    assert run_for(ALICE, state) == state and run_for(OPERATOR, state) == state


def test_a_cache_hit_names_anothers_run_only_to_its_owner(world: Any) -> None:
    from mnemos.synkron.runner import RunExecutor

    def cache_of(principal: str, hit: dict[str, Any]) -> Any:
        return RunExecutor(world, {"id": "r-2", "principal": principal})._cache_of(hit)

    assert cache_of("bob", {"run": ALICE_RUN}) is None  # an entry that names no owner names no run
    assert cache_of("bob", {"run": "r-1", "principal": "alice"}) is None
    assert cache_of("alice", {"run": "r-1", "principal": "alice"}) == "r-1"
    assert cache_of("bob", None) is None


def test_the_step_cache_is_keyed_by_the_runs_principal() -> None:
    """A hit from another's run told a developer that someone had run a value they guessed (bob started
    `echo` with ana's private text and saw `cached`): the same step of two principals has two keys."""
    from mnemos.synkron.runner import cache_key

    def state(principal: str) -> dict[str, Any]:
        step = {"definition": {"name": "say", "script": "echo ${text}"}, "inputs": [], "digests": {}}
        return {"id": "r-1", "principal": principal, "pipeline": {"name": "echo"}, "params": {"text": "private"},
                "inputs": {}, "steps": {"say": step}}  # fmt: skip

    assert cache_key(state("ana"), "say", {}) == cache_key(state("ana"), "say", {})
    assert cache_key(state("ana"), "say", {}) != cache_key(state("bob"), "say", {})


def test_over_the_gateway_another_developers_run_output_is_404(gateway: Gateway) -> None:
    started = gateway.call("POST", "/v1/pipelines/echo-text/runs", "developer", json={"params": {"text": "mine"}})
    assert started.status_code == 202, started.text
    run = started.json()["id"]
    gateway.finished_run(run, "developer")
    answers = {}
    for who, target in (("developer-b", run), ("developer-b", "echo-text-20000101-000000-0000"), ("developer", run),
                        ("operator", run)):  # fmt: skip
        body = {"params": {"text": f"runs/{target}/out"}}
        answers[(who, target)] = gateway.call("POST", "/v1/pipelines/echo-text/runs", who, json=body)
    mine, missing = answers[("developer-b", run)], answers[("developer-b", "echo-text-20000101-000000-0000")]
    assert mine.status_code == missing.status_code == 404, mine.text
    assert mine.json()["error"]["param"] == "params.text" == missing.json()["error"]["param"]
    assert mine.json()["error"]["message"] == f"params.text: run {run!r} not found"
    assert answers[("developer", run)].status_code == answers[("operator", run)].status_code == 202


def test_a_ref_the_pipeline_writes_covers_that_ref_only(world: Any) -> None:
    """The approved ``runs/<run>/out-2`` is the author's: a caller's ``runs/<run>/out`` built beside
    it is still checked (it once passed as a substring of the approved text)."""
    near = _pipeline([{"name": "a", "call": "json:loads", "params": {"s": f"runs/{ALICE_RUN}/out-2"},
                       "outputs": [{"name": "o"}]},
                      {"name": "b", "call": "json:loads", "params": {"s": "runs/${run}/out"},
                       "outputs": [{"name": "p"}]}], {"run": "none"})  # fmt: skip
    refused = _refused(world, near, {"run": ALICE_RUN}, BOB, NotFoundError)
    assert refused.param == "params.run" and refused.message == f"params.run: run {ALICE_RUN!r} not found"
