"""TRACE lineage of artifacts for a reader: an artifact a job or run made is owned like what made it
(the nearest run, step, job or request upstream, the rule of CORTEX's ``parents`` check), so a
developer cannot confirm a guess of another's output by its digest; an artifact nothing made (an
input file, a model's weights) stays shared."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from mnemos.errors import NotFoundError
from mnemos.relay.control import LineageReader
from mnemos.soul.identity import Principal
from mnemos.trace.lineage import LineageWriter, graph, owners

DEVA, DEVB = Principal("deva", "developer", "apikey"), Principal("devb", "developer", "apikey")
CAROL = Principal("carol", "developer", "apikey")
VIEWER, OPERATOR = Principal("vic", "viewer", "apikey"), Principal("olga", "operator", "apikey")
SECRET_OUTPUT = b"DEVB-SECRET-123\n1\n"
DIGEST = "sha256:" + hashlib.sha256(SECRET_OUTPUT).hexdigest()
OUT = f"artifact:{DIGEST}"  # devb's run output, written by his step's job
RESULT = "artifact:sha256:" + "c" * 64  # devb's plain job's stored result (CORTEX's dispatcher)
CACHED = "artifact:sha256:" + "d" * 64  # devb's step output with no job (a cached step)
BOTH = "artifact:sha256:" + "e" * 64  # the same bytes made by deva and by devb
INPUT = "artifact:sha256:" + "f" * 64  # a file a pipeline was given: shared


@pytest.fixture()
def engram(local_engram: Any) -> Any:
    """devb's run (a step over a shared input file, its job, its output), devb's plain job with a stored
    result, a cached step's output, and one digest that deva's run and devb's run both made."""
    w = LineageWriter(local_engram)
    w.record("file:data/in.txt", "file", path="data/in.txt")
    w.record(INPUT, "artifact", parents=["file:data/in.txt"], path="data/in.txt")
    w.record("model:m@1", "model", name="m", generation=1)
    for who in ("deva", "devb"):
        w.record(f"run:{who}-run", "intent", principal=who, pipeline="p", params={"text": "x"}, status="pending")
        w.record(f"step:{who}-run/s", "execution", parents=[f"run:{who}-run", INPUT, "model:m@1"], step="s",
                 run=f"{who}-run", job_ids=[f"{who}-run.s.1"], status="succeeded")  # fmt: skip
        w.record(f"job:{who}-run.s.1", "intent", parents=[f"step:{who}-run/s"], principal=who, function="f")
        w.record(BOTH, "result", parents=[f"job:{who}-run.s.1"], name="both", output="both",
                 ref=f"runs/{who}-run/both", run=f"{who}-run", size=4)  # fmt: skip
    w.record(OUT, "result", parents=["job:devb-run.s.1"], name="out", output="out", ref="runs/devb-run/out",
             run="devb-run", size=len(SECRET_OUTPUT), note="DEVB-DATA")  # fmt: skip  # note: not METADATA
    w.record("step:devb-run/cached", "execution", parents=["run:devb-run", INPUT], step="cached", cached=True)
    w.record(CACHED, "result", parents=["step:devb-run/cached"], output="c", ref="runs/devb-run/c", run="devb-run")
    w.record("job:devb-plain", "intent", principal="devb", function="f")
    w.record(RESULT, "artifact", parents=["job:devb-plain"], bytes=10_000_000)
    w.flush()
    assert local_engram.put(SECRET_OUTPUT) == DIGEST
    local_engram.set_ref("runs/devb-run/out", DIGEST)
    return local_engram


def _nodes(g: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in g["nodes"]}


def test_a_developer_cannot_confirm_anothers_output_by_its_digest(engram: Any) -> None:
    deva = LineageReader(DEVA)
    wrong = "sha256:" + hashlib.sha256(b"DEVB-SECRET-124\n1\n").hexdigest()
    guesses = {DIGEST: wrong, OUT: f"artifact:{wrong}", "runs/devb-run/out": "runs/devb-run/nope",
               RESULT: f"artifact:{wrong}", CACHED: f"artifact:{wrong}"}  # fmt: skip
    for node, unknown in guesses.items():
        with pytest.raises(NotFoundError) as refused:
            graph(engram, node, reader=deva)
        with pytest.raises(NotFoundError) as missing:  # the same answer as a wrong guess
            graph(engram, unknown, reader=deva)
        assert refused.value.message == missing.value.message.replace(unknown, node)
        assert refused.value.param == missing.value.param == "id"


def test_the_producers_owner_and_operators_read_it_and_a_viewer_its_metadata(engram: Any) -> None:
    for who in (DEVB, OPERATOR, None):
        node = _nodes(graph(engram, DIGEST, reader=LineageReader(who)))[OUT]
        assert node["owner"] == "devb" and node["attrs"]["note"] == "DEVB-DATA" and "withheld" not in node
        assert _nodes(graph(engram, OUT, reader=LineageReader(who)))["job:devb-run.s.1"]["owner"] == "devb"
    assert _nodes(graph(engram, RESULT, reader=LineageReader(DEVB)))[RESULT]["owner"] == "devb"
    assert _nodes(graph(engram, CACHED, reader=LineageReader(DEVB)))[CACHED]["owner"] == "devb"  # via the step
    node = _nodes(graph(engram, DIGEST, reader=LineageReader(VIEWER)))[OUT]
    assert node["owner"] == "devb" and node["attrs"]["ref"] == "runs/devb-run/out" and node["attrs"]["size"] == 18
    assert "note" not in node["attrs"] and node["withheld"] == ["note"]
    assert _nodes(graph(engram, DIGEST, reader=None))[OUT]["owner"] == "devb"  # direct ENGRAM access


def test_shared_inputs_stay_shared_and_their_graph_holds_none_of_anothers(engram: Any) -> None:
    for root in (INPUT, "file:data/in.txt", "model:m@1"):
        g = graph(engram, root, reader=LineageReader(DEVA))
        text = json.dumps(g)
        assert "devb" not in text and "DEVB" not in text, (root, text)
        assert not {OUT, RESULT, CACHED} & set(_nodes(g))
        assert all(e["from"] in _nodes(g) and e["to"] in _nodes(g) for e in g["edges"])
    shared = _nodes(graph(engram, INPUT, reader=LineageReader(DEVA)))
    assert shared[INPUT]["owner"] is None and shared[INPUT]["attrs"]["path"] == "data/in.txt"
    assert {"run:deva-run", "step:deva-run/s", BOTH} <= set(shared)
    everything = _nodes(graph(engram, INPUT, reader=LineageReader(OPERATOR)))
    assert {OUT, CACHED, BOTH, "run:devb-run"} <= set(everything)


def test_one_digest_made_by_two_owners_shows_neither_the_others_run(engram: Any) -> None:
    mine = _nodes(graph(engram, BOTH, reader=LineageReader(DEVA)))
    node = mine[BOTH]
    assert node["owner"] == "deva" and "devb" not in json.dumps(mine)
    assert "ref" not in node["attrs"] and "run" not in node["attrs"] and node["withheld"] == ["ref", "run"]
    assert node["attrs"]["size"] == 4 and "job:deva-run.s.1" in mine and "job:devb-run.s.1" not in mine
    with pytest.raises(NotFoundError):
        graph(engram, BOTH, reader=LineageReader(CAROL))
    operator = _nodes(graph(engram, BOTH, reader=LineageReader(OPERATOR)))[BOTH]
    assert "ref" in operator["attrs"] and "withheld" not in operator


def test_owners_follows_the_nearest_producer(engram: Any) -> None:
    assert owners(engram, OUT) == ("devb",)
    assert owners(engram, CACHED) == ("devb",)  # its step, then the step's run
    assert owners(engram, BOTH) == ("deva", "devb")
    assert owners(engram, INPUT) == () and owners(engram, "model:m@1") == ()
    assert owners(engram, "step:deva-run/s") == ("deva",)
    with pytest.raises(NotFoundError):
        owners(engram, "artifact:sha256:" + "0" * 64)


def test_a_graph_of_many_artifacts_stays_fast(local_engram: Any) -> None:
    """Each artifact's owner comes from its record's parents: no walk of the graph per node."""
    import time

    w = LineageWriter(local_engram)
    w.record("file:big", "file", path="big")
    w.record(INPUT, "artifact", parents=["file:big"], path="big")
    for i in range(2000):
        w.record(f"job:j{i}", "intent", parents=[INPUT], principal=f"dev{i % 7}", function="f")
        w.record(f"artifact:sha256:{i:064x}", "artifact", parents=[f"job:j{i}"], bytes=1)
    w.flush()
    graph(local_engram, INPUT, reader=LineageReader(DEVA))  # reads the segments into the index
    started = time.perf_counter()
    g = graph(local_engram, INPUT, reader=LineageReader(Principal("dev3", "developer", "apikey")))
    assert time.perf_counter() - started < 2.0
    assert len(g["nodes"]) == 2 + 2 * len(range(3, 2000, 7))


class _Edge:
    """RELAY's edge: the caller named by the ``x-who`` header."""

    PRINCIPALS = {"deva": DEVA, "devb": DEVB}

    async def admit(self, request: Any, verb: str) -> Principal:
        return self.PRINCIPALS[request.headers["x-who"]]


def test_the_gateway_answers_404_for_anothers_output_by_digest(engram: Any) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from mnemos.config import load_settings
    from mnemos.relay._errors import install_error_handlers
    from mnemos.relay.control import build_router

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(_Edge(), load_settings(engram={"uri": engram.uri}), engram))
    wrong = "sha256:" + hashlib.sha256(b"DEVB-SECRET-124\n1\n").hexdigest()
    with TestClient(app) as http:
        refused = http.get(f"/v1/lineage/{DIGEST}", headers={"x-who": "deva"})
        unknown = http.get(f"/v1/lineage/{wrong}", headers={"x-who": "deva"})
        assert refused.status_code == unknown.status_code == 404, refused.text
        assert refused.json()["error"]["message"] == unknown.json()["error"]["message"].replace(wrong, DIGEST)
        assert "devb" not in refused.text
        own = http.get(f"/v1/lineage/{DIGEST}", headers={"x-who": "devb"})
        assert own.status_code == 200 and _nodes(own.json())[OUT]["owner"] == "devb", own.text
