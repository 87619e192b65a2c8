"""TRACE lineage walked from a node that is only named as a parent: a GitOps sync's ``git:<repo>@<sha>``
is found (it is shared); an owned node that no event of its own records stays not found."""

from __future__ import annotations

import pytest

from mnemos.errors import NotFoundError
from mnemos.relay.control import LineageReader
from mnemos.soul.identity import Principal
from mnemos.trace.lineage import LineageWriter, graph

COMMIT = "git:https://***@git.example.com/org/ops.git@" + "c" * 40
BOB = Principal("bob", "developer", "apikey")


@pytest.fixture()
def engram(local_engram):
    w = LineageWriter(local_engram)
    w.record("sync:s1", "execution", parents=[COMMIT], operation="gitops-sync", path="envs/dev", diff="+ x")
    w.record("resource:Model/m@2", "result", parents=["sync:s1"], commit="c" * 40)
    # a job whose run (alice's) and input artifact were never recorded: named as parents only
    w.record("job:j1", "intent", parents=["run:alice-run", "artifact:sha256:" + "d" * 64], principal="alice")
    w.flush()
    return local_engram


def test_a_commit_leads_to_its_syncs_and_what_they_applied(engram) -> None:
    for reader in (None, LineageReader(BOB)):
        found = graph(engram, COMMIT, reader=reader)
        nodes = {n["id"]: n for n in found["nodes"]}
        assert found["root"] == COMMIT and nodes[COMMIT]["type"] == "git"
        assert {"sync:s1", "resource:Model/m@2"} <= nodes.keys()
    shown = {n["id"]: n for n in graph(engram, COMMIT, reader=LineageReader(BOB))["nodes"]}
    assert "diff" not in shown["sync:s1"]["attrs"] and "diff" in shown["sync:s1"]["withheld"]


def test_an_owned_node_named_only_as_a_parent_is_not_found(engram) -> None:
    for node in ("run:alice-run", "artifact:sha256:" + "d" * 64):
        with pytest.raises(NotFoundError):
            graph(engram, node, reader=LineageReader(BOB))
        with pytest.raises(NotFoundError):
            graph(engram, node)
