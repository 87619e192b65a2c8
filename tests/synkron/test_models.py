"""Pipelines through served models: infer (echo) and index (all-MiniLM-L6-v2) steps, semantic
search over the space, and lineage from an indexed item back to the prompt file and the models."""

from __future__ import annotations

import json
from pathlib import Path

from synkron_support import PINNED, PROMPTS, echo_model, model_pipeline


def test_infer_index_search_and_item_lineage(served, tmp_path: Path) -> None:
    client = served.client
    run = client.pipelines.run(model_pipeline(tmp_path, space="test-space"), progress=False)
    state = run.state()
    assert state["status"] == "succeeded", state["error"]
    results = [json.loads(line) for line in run.read("results").decode().splitlines()]
    prompts = [json.loads(line) for line in PROMPTS.read_text().splitlines()][:12]
    assert [r["id"] for r in results] == [p["id"] for p in prompts]  # input order kept
    assert results[0]["output"] == " ".join(prompts[0]["prompt"].split()[:6])  # echo: the first words back
    assert {(r["model"], r["model_generation"], r["model_digest"]) for r in results} == {("echo-syn", 1, PINNED)}
    assert state["steps"]["infer"]["progress"]["total"] == 12
    assert state["outputs"]["index"] == f"runs/{run.id}/index"

    hits = client.spaces.search("test-space", "how do plants make food from light", k=3)
    assert hits[0]["id"] == "photosynthesis" and hits[0]["score"] > hits[1]["score"]
    assert hits[0]["fields"]["output"].startswith("Explain how plants")
    assert client.spaces.search("test-space", "network protocol connection setup", k=1)[0]["id"] == "tcp-handshake"

    from mnemos.client import Client

    offline = Client(client.settings)  # no platform: the query is embedded by the model loaded in this process
    assert offline.spaces.search("test-space", "how do plants make food from light", k=1)[0]["id"] == "photosynthesis"

    graph = client.lineage(hits[0]["lineage"])
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert graph["root"] == "space:test-space/photosynthesis"
    upstream = {n for n, node in nodes.items() if node["direction"] == "upstream"}
    prompt_file = next(n for n in upstream if n.startswith("file:") and n.endswith("data/prompts.jsonl"))
    assert nodes[prompt_file]["type"] == "file"
    assert nodes["model:echo-syn@1"]["attrs"]["digest"] == PINNED
    assert "model:minilm-syn@1" in upstream
    assert {f"step:{run.id}/{s}" for s in ("prepare", "infer", "index")} <= upstream
    assert f"run:{run.id}" in upstream


def test_model_generation_is_part_of_the_cache_key(served, tmp_path: Path) -> None:
    client = served.client
    path = model_pipeline(tmp_path, space="cache-space", limit=4)
    first = client.pipelines.run(path, progress=False).state()
    again = client.pipelines.run(path, progress=False).state()
    assert [again["steps"][s]["status"] for s in ("prepare", "infer", "index")] == ["cached"] * 3
    served.apply(echo_model(version="2"))  # a new generation of the model: infer must run again
    third = client.pipelines.run(path, progress=False).state()
    assert [third["steps"][s]["status"] for s in ("prepare", "infer", "index")] == ["cached", "succeeded", "succeeded"]
    assert third["steps"]["infer"]["digests"] != first["steps"]["infer"]["digests"]
