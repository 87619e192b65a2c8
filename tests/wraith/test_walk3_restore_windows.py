"""Restore brings back what was stored: a budget window under 1 s, stored before such windows were
refused (``MIN_BUDGET_WINDOW_S``), is read as the 1 s floor, as the live platform reads it, for
Models, Adapters and Policies alike; and Policies go through the same admission as the other kinds
(a forced restore once refused a Model or Adapter with such a window, and never checked a Policy)."""

from __future__ import annotations

from typing import Any

import pytest
from tests_support import model_doc

from mnemos.engram import Engram
from mnemos.errors import AdmissionError
from mnemos.genome import Registry
from mnemos.genome.registry import tombstone
from mnemos.soul.limits import budget_window
from mnemos.wraith._store import all_keys
from mnemos.wraith.backup import backup, restore

SUB_SECOND = {"amount": 1, "window": 0.001}


def _stored(engram: Engram, doc: dict[str, Any]) -> None:
    """Write ``doc`` as generation 1, as a release that took sub-second windows stored it."""
    doc["metadata"]["generation"] = 1
    engram.write_json(f"registry/{doc['kind']}/{doc['metadata']['name']}/00000001.json", doc)


def _resources() -> list[dict[str, Any]]:
    return [
        model_doc("alpha", limits={"budget": SUB_SECOND}),
        {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "up"},
         "spec": {"baseUrl": "http://127.0.0.1:9/v1", "limits": {"budget": SUB_SECOND}}},
        {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": "spend"},
         "spec": {"limits": [{"teams": ["search"], "budget": SUB_SECOND}]}},
    ]  # fmt: skip


def test_a_forced_restore_brings_back_sub_second_budget_windows_read_as_one_second(local_engram: Engram) -> None:
    for doc in _resources():
        _stored(local_engram, doc)
    dest = Engram(backup(local_engram).destination)
    registry = Registry(local_engram)
    for kind, name in (("Model", "alpha"), ("Adapter", "up"), ("Policy", "spend")):
        registry.delete(kind, name)

    restored = restore(dest, "latest", local_engram, force=True)  # it was refused: "model/alpha: spec.limits…"

    assert sorted(restored.reverted) == [
        "adapter/up: generation 2 (the snapshot's generation 1)",
        "model/alpha: generation 2 (the snapshot's generation 1)",
        "policy/spend: generation 2 (the snapshot's generation 1)",
    ]
    model, adapter = registry.get("Model", "alpha"), registry.get("Adapter", "up")
    policy = registry.get("Policy", "spend")
    for budget in (model.spec.limits.budget, adapter.spec.limits.budget, policy.spec.limits[0].budget):
        assert budget.window == 0.001  # as stored: nothing acknowledged is rewritten
        assert budget_window(budget) == 1.0  # and enforced as the floor, as before the backup


def test_a_restore_into_an_empty_root_is_an_exact_copy_of_them(local_engram: Engram, tmp_path) -> None:
    for doc in _resources():
        _stored(local_engram, doc)
    dest = Engram(backup(local_engram).destination)
    target = Engram(str(tmp_path / "restored"))
    restore(dest, "latest", target)
    registry = [k for k in all_keys(local_engram) if k.startswith("registry/")]
    assert {k: target.read_bytes(k) for k in registry} == {k: local_engram.read_bytes(k) for k in registry}


def test_a_policy_today_s_schema_refuses_is_refused_like_a_model_naming_it_and_the_field(local_engram: Engram) -> None:
    """The same rule for every kind: each refused resource is named, with its field, and nothing is written."""
    policy = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": "open"},
              "spec": {"access": [{"models": ["alpha"]}]}}  # an access rule naming nobody  # fmt: skip
    _stored(local_engram, policy)
    _stored(local_engram, model_doc("beta", replicas=-1))
    dest = Engram(backup(local_engram).destination)
    for kind, name in (("Policy", "open"), ("Model", "beta")):
        local_engram.create_json(*tombstone(f"registry/{kind}/{name}", 1))  # deleted since
    before = {k: local_engram.read_bytes(k) for k in all_keys(local_engram)}
    with pytest.raises(AdmissionError) as refused:
        restore(dest, "latest", local_engram, force=True)
    lines = refused.value.message.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["model/beta", "policy/open"], lines
    assert "spec.replicas" in lines[0] and "spec.access" in lines[1], lines
    assert {k: local_engram.read_bytes(k) for k in all_keys(local_engram)} == before
