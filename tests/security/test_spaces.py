"""Embedding spaces follow the ownership rule (docs/guides/security.md, "Ownership"): a developer
lists and searches their own spaces, their team's and the shared (ownerless) ones, and another's is
404 exactly as one that does not exist; a new space is claimed atomically when the first run that
writes it starts; a resumed run passes its start checks again, as the resumer."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from security_support import Gateway

from mnemos.engram import Engram
from mnemos.errors import NotFoundError, PermissionDeniedError, ValidationError
from mnemos.genome import parse_resource
from mnemos.soul.identity import Principal
from mnemos.synkron import _state
from mnemos.synkron._plan import prepare
from mnemos.synkron.spaces import SpacesAPI, publish

ALICE = Principal("alice", "developer", "apikey", team="red")
RUBY = Principal("ruby", "developer", "apikey", team="red")  # alice's teammate
BOB = Principal("bob", "developer", "apikey")
OPERATOR, VIEWER = Principal("olga", "operator", "apikey", team="ops"), Principal("victor", "viewer", "apikey")
BOB_RUN, OPS_RUN = "prep-20260101-000000-b0b0", "prep-20260101-000000-0995"
INDEX = parse_resource(  # its default input is a run output the registered pipeline names: approved with it
    {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p", "generation": 1},
     "spec": {"params": {"space": "s", "source": f"runs/{OPS_RUN}/out"},
              "steps": [{"name": "ix", "modelRef": "emb", "index": {"space": "${space}", "input": "${source}"}}]}}
)  # fmt: skip


@pytest.fixture()
def world(tmp_path: Path) -> SimpleNamespace:
    engram = Engram(str(tmp_path / "engram"))
    for run, owner in ((BOB_RUN, "bob"), (OPS_RUN, "olga")):
        engram.write_json(_state.state_key(run), {"id": run, "principal": owner, "status": "succeeded"})
        engram.set_ref(f"runs/{run}/out", engram.put(f'{{"text": "{owner.upper()}-PRIVATE"}}\n'.encode()))
    registry = SimpleNamespace(get=lambda kind, name: SimpleNamespace(generation=1))
    return SimpleNamespace(engram=engram, registry=registry, connected=False, settings=None)


def _write(engram: Engram, space: str, owner: str | None = None, team: str = "") -> None:
    """A space as an index step leaves it (a manifest naming no real vectors: enough to list it)."""
    doc: dict[str, Any] = {"space": space, "count": 1, "model": {"name": "no-such-model"}, "run": "r",
                           "records": engram.put(b'{"id": "item-0", "text": "t"}\n')}  # fmt: skip
    if owner is not None:
        doc.update(owner=owner, team=team)
    engram.write_json(f"spaces/{space}/manifest.json", doc)


def _names(listed: list[dict[str, Any]], ours: set[str]) -> set[str]:
    return {s["space"] for s in listed} & ours


# -- who lists and searches a space ------------------------------------------------------------------


def test_a_developer_lists_and_searches_own_team_and_shared_spaces_only(world: Any) -> None:
    _write(world.engram, "alice-space", "alice", "red")
    _write(world.engram, "ruby-space", "ruby", "red")
    _write(world.engram, "bob-space", "bob")
    _write(world.engram, "shared-space")
    ours = {"alice-space", "ruby-space", "bob-space", "shared-space"}
    api = SpacesAPI(world, local_models=False)
    assert _names(api.list(principal=ALICE), ours) == {"alice-space", "ruby-space", "shared-space"}
    assert _names(api.list(principal=BOB), ours) == {"bob-space", "shared-space"}  # no team: no team's
    for everyone in (OPERATOR, VIEWER, None):  # viewers list every space's metadata, as every job's
        assert _names(api.list(principal=everyone), ours) == ours
    missing = pytest.raises(NotFoundError, api.get, "nothing-here", principal=BOB).value
    for space, who in (("alice-space", BOB), ("bob-space", ALICE), ("bob-space", VIEWER)):
        theirs = pytest.raises(NotFoundError, api.get, space, principal=who).value
        assert (theirs.status, theirs.param) == (missing.status, missing.param) == (404, "space")
        assert theirs.message == missing.message.replace("nothing-here", space)
        with pytest.raises(NotFoundError):  # before the query is embedded
            api.search(space, "q", principal=who)
    for space, who in (("alice-space", ALICE), ("ruby-space", ALICE), ("shared-space", BOB),
                       ("bob-space", OPERATOR)):  # fmt: skip
        assert api.get(space, principal=who)["space"] == space


def test_over_the_gateway_anothers_space_is_not_listed_and_is_404_as_no_space(gateway: Gateway) -> None:
    engram = gateway.client.engram
    tag = uuid.uuid4().hex[:6]
    mine, theirs, team, shared = (f"{n}-{tag}" for n in ("mine", "theirs", "team", "shared"))
    _write(engram, mine, "developer-user")
    _write(engram, theirs, "developer-b-user")
    _write(engram, team, "someone-red", f"red-{tag}")
    _write(engram, shared)
    red = gateway.store.create_api_key(f"red-{tag}-dev", "developer", team=f"red-{tag}").secret
    ours = {mine, theirs, team, shared}

    def listed(who: str) -> set[str]:
        answer = gateway.call("GET", "/v1/spaces", who)
        assert answer.status_code == 200, answer.text
        return _names(answer.json()["data"], ours)

    assert listed("developer") == {mine, shared}
    assert listed(red) == {team, shared}
    assert listed("operator") == listed("admin") == listed("viewer") == ours

    def search(space: str, who: str) -> Any:
        return gateway.call("POST", f"/v1/spaces/{space}/search", who, json={"query": "q", "k": 1})

    none, other = search(f"nothing-{tag}", "developer"), search(theirs, "developer")
    assert none.status_code == other.status_code == 404, other.text
    assert other.json() == json.loads(none.text.replace(f"nothing-{tag}", theirs))  # no existence oracle
    assert search(team, "developer").status_code == 404 and search(mine, red).status_code == 404
    # allowed: past the ownership check, refused only because the space's model is not served (503)
    for space, who in ((mine, "developer"), (shared, "developer"), (team, red), (theirs, "operator")):
        answer = search(space, who)
        assert answer.status_code == 503 and answer.json()["error"]["param"] == "model", (space, who, answer.text)

    def lineage(space: str, who: str) -> Any:
        return gateway.call("GET", f"/v1/lineage/space:{space}/item-1", who)

    none, other = lineage(f"nothing-{tag}", "developer"), lineage(theirs, "developer")
    assert none.status_code == other.status_code == 404, other.text  # an item's lineage: no oracle either
    assert other.json() == json.loads(none.text.replace(f"nothing-{tag}", theirs))
    assert "has no item" in lineage(theirs, "operator").json()["error"]["message"]  # past the check
    broken = f"broken-{tag}"  # a manifest left without its model: a 404 that says so, never a 500
    engram.write_json(f"spaces/{broken}/manifest.json", {"space": broken, "count": 0, "owner": None})
    answer = search(broken, "developer")
    assert answer.status_code == 404 and "records no embedding model" in answer.json()["error"]["message"]


# -- who writes a space, and the claim that settles a race -----------------------------------------


def test_a_new_space_is_claimed_when_the_run_starts(world: Any) -> None:
    assert prepare(world, INDEX, {"space": "fresh"}, principal=ALICE)["status"] == "pending"
    assert world.engram.read_json("spaces/fresh/owner.json") == {"owner": "alice", "team": "red"}
    for who in (BOB, RUBY):  # a later starter, teammates too, may not write it (write = owner only)
        with pytest.raises(PermissionDeniedError) as refused:
            prepare(world, INDEX, {"space": "fresh"}, principal=who)
        assert refused.value.status == 403 and refused.value.param == "params.space"
        assert "belongs to another principal" in refused.value.message
        # the owner is named only to a caller who lists the space (her teammate), never to bob, whom
        # search and lineage tell the space does not exist
        assert ("alice" in refused.value.message) == (who is RUBY), refused.value.message
    assert prepare(world, INDEX, {"space": "fresh"}, principal=ALICE)["status"] == "pending"
    assert prepare(world, INDEX, {"space": "fresh"}, principal=OPERATOR)["status"] == "pending"
    assert world.engram.read_json("spaces/fresh/owner.json")["owner"] == "alice"
    # claimed but not written yet: not listed, and searched it is "not found", as no space at all
    api = SpacesAPI(world, local_models=False)
    assert api.list(principal=ALICE) == [] and api.list() == []
    with pytest.raises(NotFoundError, match="no index step has written it"):
        api.get("fresh", principal=ALICE)
    # whoever's run publishes first, the claim names the owner (the loser's content never owns it)
    digest = world.engram.put(json.dumps({"space": "fresh", "count": 0, "model": {"name": "m"}}).encode())
    assert publish(world.engram, digest, run_id="r-bob", step="ix", owner="bob")["owner"] == "alice"
    assert world.engram.read_json("spaces/fresh/manifest.json")["team"] == "red"
    assert [s["space"] for s in api.list(principal=RUBY)] == ["fresh"]  # her team's: listed, searched
    assert api.get("fresh", principal=RUBY)["owner"] == "alice"
    with pytest.raises(NotFoundError):
        api.get("fresh", principal=BOB)


def test_a_refusal_names_the_owner_only_to_a_caller_who_lists_the_space(world: Any) -> None:
    _write(world.engram, "alice-space", "alice", "red")
    bob = pytest.raises(PermissionDeniedError, prepare, world, INDEX, {"space": "alice-space"}, principal=BOB).value
    assert (bob.status, bob.param) == (403, "params.space")
    assert bob.message == ("params.space: space 'alice-space' belongs to another principal: choose another "
                           "space name: pass -p space=<yours> (params.space over the API)")  # fmt: skip
    ruby = pytest.raises(PermissionDeniedError, prepare, world, INDEX, {"space": "alice-space"}, principal=RUBY).value
    assert (ruby.status, ruby.param) == (403, "params.space") and "'alice'" in ruby.message


LOOK_ALIKES = ("Alice-Space", "alice-space ", "alice-space.", "alice\u2010space", "\uff41lice-space", "-alice",
               "alice_space", "alice/space", "alice-space\n", "", "a" * 254)  # fmt: skip


@pytest.mark.parametrize("space", LOOK_ALIKES)
def test_a_space_name_search_would_refuse_is_refused_when_the_run_starts(world: Any, space: str) -> None:
    """``/v1/spaces/{space}/search`` takes DNS-1123 names only: a run may not write (and so list) a
    look-alike of another's space that no one can search. 422 naming the param, for every caller."""
    _write(world.engram, "alice-space", "alice", "red")
    for who in (BOB, ALICE, OPERATOR, None):
        with pytest.raises(ValidationError) as refused:
            prepare(world, INDEX, {"space": space}, principal=who)
        assert (refused.value.status, refused.value.param) == (422, "params.space")
        assert "not a valid space name" in refused.value.message and "[a-z0-9]" in refused.value.message
    written = {k.split("/")[1] for k in world.engram.list("spaces")}
    assert written == {"alice-space"}  # nothing claimed
    assert [s["space"] for s in SpacesAPI(world, local_models=False).list(principal=BOB)] == []


def test_a_space_name_written_in_the_pipeline_is_checked_too(world: Any) -> None:
    doc = INDEX.dump()
    doc["spec"]["steps"][0]["index"]["space"] = "Shared-Space"
    with pytest.raises(ValidationError) as refused:
        prepare(world, parse_resource(doc), principal=BOB)
    assert (refused.value.status, refused.value.param) == (422, "spec.steps[0].index.space")
    for fine in ("a", "alice-space", "alice.space.v2", "0-9", "a" * 253):
        assert prepare(world, INDEX, {"space": fine}, principal=BOB)["status"] == "pending"


def test_of_runs_racing_into_a_new_space_exactly_one_owns_it(world: Any) -> None:
    racers = [Principal(f"dev-{i}", "developer", "apikey") for i in range(6)]
    barrier, won, lost = threading.Barrier(len(racers)), [], []

    def start(who: Principal) -> None:
        barrier.wait()
        try:
            prepare(world, INDEX, {"space": "contested"}, principal=who)
            won.append(who.subject)
        except PermissionDeniedError:
            lost.append(who.subject)

    threads = [threading.Thread(target=start, args=(who,)) for who in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(won) == 1 and len(lost) == len(racers) - 1, (won, lost)
    assert world.engram.read_json("spaces/contested/owner.json")["owner"] == won[0]


def test_a_local_callers_new_space_is_shared(world: Any) -> None:
    """A run without an authenticated principal (a notebook) claims its new space with no owner:
    every developer lists and searches it, and only operators and admins write it over the gateway."""
    prepare(world, INDEX, {"space": "notebook"}, principal=None)
    digest = world.engram.put(json.dumps({"space": "notebook", "count": 0, "model": {"name": "m"}}).encode())
    assert publish(world.engram, digest, run_id="r", step="ix", owner="local:me")["owner"] is None
    api = SpacesAPI(world, local_models=False)
    assert [s["space"] for s in api.list(principal=BOB)] == ["notebook"]
    with pytest.raises(PermissionDeniedError, match="shared"):
        prepare(world, INDEX, {"space": "notebook"}, principal=ALICE)
    assert prepare(world, INDEX, {"space": "notebook"}, principal=OPERATOR)["status"] == "pending"


# -- resume --------------------------------------------------------------------------------------------


def _registered(pipeline: Any) -> SimpleNamespace:
    """A registry holding ``pipeline`` (and any Model, at generation 1)."""
    return SimpleNamespace(get=lambda kind, name: pipeline if kind == "Pipeline" else SimpleNamespace(generation=1))


def _resumer(world: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any]]:
    """``client.pipelines`` whose runner records the resumes it is asked for."""
    from mnemos.synkron.api import PipelinesAPI

    asked: list[Any] = []
    api = PipelinesAPI(world)

    def resume(run_id: str, settings: Any, principal: Any) -> dict[str, Any]:
        asked.append(principal)
        return {"id": run_id, "status": "pending"}

    service = SimpleNamespace(resume=SimpleNamespace(remote=resume), active_of=SimpleNamespace(remote=lambda who: 0))
    monkeypatch.setattr(api, "_service", lambda: service)
    monkeypatch.setattr(world, "registry", _registered(INDEX))  # the runs resumed are of the registered INDEX
    monkeypatch.setattr("mnemos.synkron.api._get", lambda ref, timeout=None: ref)
    return api, asked


def _failed(world: Any, state: dict[str, Any]) -> str:
    state["status"] = "failed"
    _state.save(world.engram, state)
    return str(state["id"])


def test_resume_is_the_owners_and_operators_and_runs_the_start_checks_again(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, asked = _resumer(world, monkeypatch)
    run = _failed(world, prepare(world, INDEX, {"space": "taken"}, principal=ALICE))
    with pytest.raises(NotFoundError, match="not found"):
        api.resume(run, wait=False, principal=BOB)  # another developer's run: as no run
    with pytest.raises(PermissionDeniedError):
        api.resume(run, wait=False, principal=VIEWER)
    assert asked == []
    api.resume(run, wait=False, principal=ALICE)
    assert asked == ["alice"]
    # the space was taken over meanwhile (a run of before claims, bob's run won it): refused at resume
    world.engram.delete("spaces/taken/owner.json")
    _write(world.engram, "taken", "bob")
    with pytest.raises(PermissionDeniedError) as refused:
        api.resume(run, wait=False, principal=ALICE)
    assert refused.value.param == "params.space" and "bob" not in refused.value.message  # not hers to list
    api.resume(run, wait=False, principal=OPERATOR)  # operators write any space
    assert asked == ["alice", "olga"]
    # a run of before claims, its space still new: an operator resuming it does not take the space
    legacy = _failed(world, prepare(world, INDEX, {"space": "legacy"}, principal=ALICE))
    world.engram.delete("spaces/legacy/owner.json")
    api.resume(legacy, wait=False, principal=OPERATOR)
    assert not world.engram.exists("spaces/legacy/owner.json")
    api.resume(legacy, wait=False, principal=ALICE)  # its owner resuming it claims it
    assert world.engram.read_json("spaces/legacy/owner.json") == {"owner": "alice", "team": "red"}


def test_resume_refuses_a_run_output_the_resumer_may_not_read(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    api, asked = _resumer(world, monkeypatch)
    state = prepare(world, INDEX, {"space": "alices"}, principal=ALICE)
    state["params"]["source"] = f"runs/{BOB_RUN}/out"  # as a run prepared before refs were checked
    run = _failed(world, state)
    with pytest.raises(NotFoundError) as refused:
        api.resume(run, wait=False, principal=ALICE)
    assert refused.value.param == "params.source"
    assert refused.value.message == f"params.source: run {BOB_RUN!r} not found"
    assert asked == []
    api.resume(run, wait=False, principal=OPERATOR)
    assert asked == ["olga"]
