"""TRACE lineage for a reader (``graph(..., reader=…)``): nodes owned by others are left out for a
reader who does not see them, data is withheld from one who does not read it (RELAY's
``LineageReader`` applies SOUL's ownership rule, as ``/v1/jobs`` and ``/v1/runs`` do)."""

from __future__ import annotations

import json

import pytest

from mnemos.errors import NotFoundError
from mnemos.relay.control import LineageReader
from mnemos.soul.identity import Principal
from mnemos.trace.lineage import LineageWriter, graph, owner_of, request_event

SECRET = "ALICE-PRIVATE"
OUT = "artifact:sha256:" + "a" * 64
SHARED = "artifact:sha256:" + "b" * 64
ALICE, BOB = Principal("alice", "developer", "apikey"), Principal("bob", "developer", "apikey")
VIEWER, OPERATOR = Principal("vic", "viewer", "apikey"), Principal("olga", "operator", "apikey")


@pytest.fixture()
def engram(local_engram):
    """Alice's failed run (a step, a job, an output made from a shared input), Bob's run over the same
    input, a request of each under one model, and audit events of each and of no one."""
    w = LineageWriter(local_engram)
    w.record("resource:Pipeline/p@1", "resource", kind="Pipeline", name="p", generation=1)
    w.record(SHARED, "artifact", path="data/in.txt")
    for who in ("alice", "bob"):
        w.record(f"run:{who}-run", "intent", parents=["resource:Pipeline/p@1"], principal=who, pipeline="p",
                 params={"text": f"{who.upper()}-PRIVATE"}, status="pending")  # fmt: skip
        w.record(f"step:{who}-run/s", "execution", parents=[f"run:{who}-run", SHARED], step="s", status="failed",
                 error=f"step 's' failed: {who.upper()}-PRIVATE", job_ids=[f"{who}-job"])  # fmt: skip
        w.record(f"job:{who}-job", "intent", parents=[f"step:{who}-run/s"], principal=who, function="f")
        w.record(f"job:{who}-job", "result", status="failed", error=f"RuntimeError: {who.upper()}-PRIVATE")
        w.record(f"run:{who}-run", "result", status="failed", error=f"{who.upper()}-PRIVATE",
                 outputs={"out": f"runs/{who}-run/out"})  # fmt: skip
    w.record(OUT, "result", parents=["job:alice-job"], output="out", ref="runs/alice-run/out", size=3)
    for who in ("alice", "bob"):
        w.extend(request_event(f"req-{who}", model="m", generation=1, digest=None, principal=who, endpoint="chat",
                               caller={"subject": who, "grant_id": f"key-{who}"},
                               usage={"prompt": 1, "completion": 2}))  # fmt: skip
    w.record("audit:a1", "audit", action="secret.set", actor="apikey:alice", name="s", key="k")
    w.record("audit:b1", "audit", action="auth.refused", subject="bob", client="10.1.2.3", grant_id="key-bob")
    w.record("audit:n1", "audit", action="auth.refused", client="10.9.9.9", reason="unknown API key")
    w.flush()
    return local_engram


def _nodes(g: dict) -> dict[str, dict]:
    return {n["id"]: n for n in g["nodes"]}


def test_a_developer_is_not_found_anothers_run_job_step_request_or_audit_event(engram) -> None:
    bob = LineageReader(BOB)
    for node in ("run:alice-run", "alice-run", "job:alice-job", "step:alice-run/s", "req-alice", "audit:a1",
                 "audit:n1"):  # fmt: skip
        with pytest.raises(NotFoundError) as refused:
            graph(engram, node, reader=bob)
        with pytest.raises(NotFoundError) as unknown:  # the same answer as for an id that does not exist
            graph(engram, node + "-nope", reader=bob)
        assert refused.value.message == unknown.value.message.replace(node + "-nope", node)
        assert refused.value.param == unknown.value.param == "id"
    own = graph(engram, "run:bob-run", reader=bob)
    assert SECRET not in json.dumps(own) and "BOB-PRIVATE" in json.dumps(own)  # the owner reads his own data


def test_a_developers_graph_of_a_shared_node_holds_only_their_own(engram) -> None:
    for root in ("resource:Pipeline/p@1", SHARED, "model:m@1"):
        g = graph(engram, root, reader=LineageReader(BOB))
        text = json.dumps(g)
        assert "alice" not in text and SECRET not in text, (root, text)
        assert all(e["from"] in _nodes(g) and e["to"] in _nodes(g) for e in g["edges"])
    assert "run:bob-run" in _nodes(graph(engram, "resource:Pipeline/p@1", reader=LineageReader(BOB)))
    assert set(_nodes(graph(engram, "model:m@1", reader=LineageReader(BOB)))) == {"model:m@1", "request:req-bob"}
    # Alice's output is hers, as the job that made it: for Bob it does not exist, as an unknown digest
    with pytest.raises(NotFoundError) as refused:
        graph(engram, OUT, reader=LineageReader(BOB))
    with pytest.raises(NotFoundError) as unknown:
        graph(engram, OUT[:-1] + "0", reader=LineageReader(BOB))
    assert refused.value.message == unknown.value.message.replace(OUT[:-1] + "0", OUT)
    assert OUT not in _nodes(graph(engram, "resource:Pipeline/p@1", reader=LineageReader(BOB)))
    assert _nodes(graph(engram, OUT, reader=LineageReader(ALICE)))[OUT]["owner"] == "alice"


def test_a_viewer_reads_every_nodes_metadata_but_no_data(engram) -> None:
    viewer = LineageReader(VIEWER)
    g = graph(engram, "resource:Pipeline/p@1", reader=viewer)
    assert "PRIVATE" not in json.dumps(g)
    nodes = _nodes(g)
    run = nodes["run:alice-run"]
    assert run["owner"] == "alice" and run["attrs"]["status"] == "failed" and run["attrs"]["pipeline"] == "p"
    assert run["attrs"]["params"] == {"text": None} and run["attrs"]["outputs"] == {"out": "runs/alice-run/out"}
    assert run["attrs"]["error"] == "failed (details withheld: only the owner and operators read them)"
    assert run["withheld"] == ["error", "params"]
    step = nodes["step:alice-run/s"]
    assert step["owner"] == "alice" and step["attrs"]["job_ids"] == ["alice-job"]  # links are metadata
    job = _nodes(graph(engram, "job:alice-job", reader=viewer))["job:alice-job"]
    assert job["attrs"]["error"].startswith("RuntimeError (details withheld") and job["attrs"]["function"] == "f"
    request = _nodes(graph(engram, "req-alice", reader=viewer))["request:req-alice"]
    assert request["attrs"] == {"principal": "alice", "model": "m", "generation": 1, "model_digest": None,
                                "trace_id": None, "endpoint": "chat"}  # fmt: skip
    assert request["withheld"] == ["caller", "usage"]
    for audit in ("audit:a1", "audit:b1", "audit:n1"):  # audit events: the actor's and the operators' only
        with pytest.raises(NotFoundError):
            graph(engram, audit, reader=viewer)


def test_a_hash_of_data_is_withheld_with_the_data(local_engram) -> None:
    """A viewer who may not read a job's result or a step's params could still check a guess of them
    against their sha256 (a word count's result has few likely values): an inline result's digest and
    a step's cache key are withheld with the data; an artifact's digest (a stored file) stays."""
    import hashlib

    result = json.dumps({"secret": 2, "words": 1}).encode()
    w = LineageWriter(local_engram)
    w.record("job:small", "intent", principal="alice", function="f")
    w.record("job:small", "result", status="succeeded", result_digest="sha256:" + hashlib.sha256(result).hexdigest(),
             result_inline=True, result_bytes=len(result))  # fmt: skip
    w.record("job:big", "intent", principal="alice", function="f")
    w.record("job:big", "result", status="succeeded", result_digest=SHARED[len("artifact:"):], result_inline=False,
             result_bytes=10_000_000)  # fmt: skip
    w.record("run:r", "intent", principal="alice", pipeline="p", params={"text": SECRET})
    w.record("step:r/s", "execution", parents=["run:r"], step="s", status="succeeded", cache_key="c" * 64)
    w.flush()
    small = _nodes(graph(local_engram, "job:small", reader=LineageReader(VIEWER)))["job:small"]
    assert "result_digest" not in small["attrs"] and "result_digest" in small["withheld"]
    assert small["attrs"]["result_bytes"] == len(result) and small["attrs"]["status"] == "succeeded"
    big = _nodes(graph(local_engram, "job:big", reader=LineageReader(VIEWER)))["job:big"]
    assert big["attrs"]["result_digest"] == SHARED[len("artifact:"):]  # a stored artifact: its name
    step = _nodes(graph(local_engram, "step:r/s", reader=LineageReader(VIEWER)))["step:r/s"]
    assert "cache_key" not in step["attrs"] and step["withheld"] == ["cache_key"]
    owner = _nodes(graph(local_engram, "job:small", reader=LineageReader(ALICE)))["job:small"]
    assert owner["attrs"]["result_digest"].startswith("sha256:")  # the owner reads it all


def test_owners_and_operators_read_everything(engram) -> None:
    mine = _nodes(graph(engram, "run:alice-run", reader=LineageReader(ALICE)))
    assert mine["run:alice-run"]["attrs"]["params"] == {"text": SECRET} and "withheld" not in mine["run:alice-run"]
    assert SECRET in mine["step:alice-run/s"]["attrs"]["error"] and SECRET in mine["job:alice-job"]["attrs"]["error"]
    assert _nodes(graph(engram, "audit:a1", reader=LineageReader(ALICE)))["audit:a1"]["attrs"]["key"] == "k"
    for reader in (LineageReader(OPERATOR), LineageReader(None), None):  # None: authentication off / direct access
        g = graph(engram, "resource:Pipeline/p@1", reader=reader)
        assert {"run:alice-run", "run:bob-run"} <= set(_nodes(g)) and SECRET in json.dumps(g)
        audit = _nodes(graph(engram, "audit:b1", reader=reader))["audit:b1"]
        assert audit["attrs"]["client"] == "10.1.2.3" and audit["owner"] == "bob"


def test_owner_of_audit_events_and_runs() -> None:
    assert owner_of({"id": "audit:1", "attrs": {"actor": "apikey:alice"}}) == "alice"
    assert owner_of({"id": "audit:1", "attrs": {"actor": "token:a:b"}}) == "a:b"
    assert owner_of({"id": "audit:1", "attrs": {"actor": "local:root"}}) == "local:root"
    assert owner_of({"id": "audit:1", "type": "audit", "attrs": {"subject": "bob"}}) == "bob"
    assert owner_of({"id": "audit:1", "attrs": {"client": "10.0.0.1"}}) is None
    assert owner_of({"id": "run:r", "attrs": {"principal": "carol"}}) == "carol"
    assert owner_of({"id": "artifact:sha256:00", "attrs": {}}) is None
