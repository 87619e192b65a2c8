"""TRACE lineage: events merged into a graph, queries upstream and downstream, the tree, and the
lineage a real pipeline run records (input file → steps → CORTEX jobs → artifacts)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from mnemos.errors import NotFoundError
from mnemos.trace.lineage import LineageWriter, event, graph, record, render_tree, request_event

DIGEST = "sha256:" + "0" * 64


def _render(tree) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(tree)
    return console.export_text()


def test_graph_merges_events_and_walks_both_ways(local_engram) -> None:
    w = LineageWriter(local_engram)
    w.record("run:r1", "intent", parents=["resource:Pipeline/p@1"], principal="alice")
    w.record("file:data/x.jsonl", "file", path="data/x.jsonl")
    w.record(f"artifact:{DIGEST}", "artifact", parents=["file:data/x.jsonl"])
    w.record("step:r1/a", "execution", parents=["run:r1", f"artifact:{DIGEST}"], status="succeeded")
    w.record("artifact:sha256:" + "1" * 64, "result", parents=["step:r1/a"], output="out")
    w.flush()
    record(local_engram, "run:r1", "result", status="succeeded")  # a later event of the same node
    g = graph(local_engram, "r1")  # a bare run id resolves
    assert g["root"] == "run:r1"
    nodes = {n["id"]: n for n in g["nodes"]}
    assert nodes["run:r1"]["type"] == "intent"
    assert nodes["run:r1"]["attrs"] == {"principal": "alice", "status": "succeeded"}
    assert nodes["resource:Pipeline/p@1"]["direction"] == "upstream"
    assert nodes["artifact:sha256:" + "1" * 64]["direction"] == "downstream"
    assert {"from": "run:r1", "to": "step:r1/a"} in g["edges"]
    # from the output back to the file it came from
    up = graph(local_engram, "sha256:" + "1" * 64)
    assert {"file:data/x.jsonl", f"artifact:{DIGEST}", "step:r1/a", "run:r1"} <= {n["id"] for n in up["nodes"]}
    text = _render(render_tree(up))
    assert "came from" in text and "file:data/x.jsonl" in text and "output=out" in text
    with pytest.raises(NotFoundError, match="no lineage for 'nope'"):
        graph(local_engram, "nope")


def test_new_segments_are_seen_and_secrets_masked(local_engram) -> None:
    record(local_engram, "run:r2", "intent", params={"api_key": "sk-123", "limit": 3}, token="t")
    assert graph(local_engram, "run:r2")["nodes"][0]["attrs"] == {
        "params": {"api_key": "***", "limit": 3},
        "token": "***",
    }
    local_engram.append("lineage", request_event("req-1", model="m", generation=2, digest=DIGEST, principal="bob",
                                                 prompt_tokens=3))  # fmt: skip
    g = graph(local_engram, "req-1")
    assert g["root"] == "request:req-1"
    assert {n["id"] for n in g["nodes"]} == {"request:req-1", "model:m@2"}
    assert g["nodes"][0]["attrs"]["prompt_tokens"] == 3  # token counts are not secrets
    assert event("x", "audit", password="p", caller={"credential": "k1", "api_key": "mk_x"})["attrs"] == {
        "password": "***",
        "caller": {"credential": "k1", "api_key": "***"},
    }
    assert event("y", "audit", items=[{"secret": "s", "n": 1}, "plain", [{"Api-Key": "k"}]])["attrs"] == {
        "items": [{"secret": "***", "n": 1}, "plain", [{"Api-Key": "***"}]],  # inside lists too
    }
    # a writer that wrote the model node already (the gateway: once per replica) asks for the request only
    only = request_event("req-2", model="m", generation=2, digest=DIGEST, principal="bob", with_model=False)
    assert [e["id"] for e in only] == ["request:req-2"] and only[0]["parents"] == ["model:m@2"]


def test_a_run_records_lineage_from_file_to_artifacts(ray_cluster, settings, tmp_path: Path) -> None:
    import mnemos
    from mnemos.cli.trace import app as trace_app

    client = mnemos.connect(settings=settings)
    (tmp_path / "prompts.txt").write_text("first prompt\nsecond prompt\n")
    doc = {
        "apiVersion": "synkron.mnemos.dev/v1",
        "kind": "Pipeline",
        "metadata": {"name": "lineage-check"},
        "spec": {
            "steps": [
                {
                    "name": "prepare",
                    "call": "mnemos.synkron.steps:prepare_prompts",
                    "params": {"source": "prompts.txt"},
                    "outputs": [{"name": "prompts"}],
                }
            ]
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    run = client.pipelines.run(path, progress=False, principal="carol")
    state = run.state()
    assert state["status"] == "succeeded", state["error"]
    g = client.lineage(run.id)
    nodes = {n["id"]: n for n in g["nodes"]}
    assert nodes[f"run:{run.id}"]["attrs"]["principal"] == "carol"
    assert nodes[f"run:{run.id}"]["attrs"]["status"] == "succeeded"
    assert nodes["resource:Pipeline/lineage-check@1"]["direction"] == "upstream"
    job = state["steps"]["prepare"]["job_ids"][0]
    assert nodes[f"job:{job}"]["direction"] == "downstream"  # CORTEX recorded the job under the step
    output = f"artifact:{state['steps']['prepare']['digests']['prompts']}"
    assert nodes[output]["attrs"]["ref"] == f"runs/{run.id}/prompts"
    up = {n["id"] for n in client.lineage(f"runs/{run.id}/prompts")["nodes"]}  # a ref resolves to its artifact
    assert any(n.startswith("file:") and n.endswith("prompts.txt") for n in up)

    cli = typer.Typer()
    cli.add_typer(trace_app, name="trace")
    result = CliRunner().invoke(cli, ["trace", "lineage", run.id], env={"MNEMOS_ENGRAM__URI": settings.engram.uri})
    assert result.exit_code == 0, result.output
    assert f"run:{run.id}" in result.output and "led to" in result.output and "step:" in result.output
    as_json = CliRunner().invoke(cli, ["trace", "lineage", run.id, "-o", "json"],
                                 env={"MNEMOS_ENGRAM__URI": settings.engram.uri})  # fmt: skip
    assert '"root": "run:' in as_json.output
