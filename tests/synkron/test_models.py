"""Pipelines through served models: infer (echo) and index (all-MiniLM-L6-v2) steps, semantic
search over the space, and lineage from an indexed item back to the prompt file and the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synkron_support import PINNED, PROMPTS, echo_model, model_pipeline

from mnemos.errors import ConflictError


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

    # The space records the weights that embedded it; other weights of the same width served under the
    # model's name since made a search rank by noise, silently (only a width change was caught).
    key = "spaces/test-space/manifest.json"
    manifest = client.engram.read_json(key)
    assert manifest["model"]["digest"], manifest["model"]
    client.engram.write_json(key, {**manifest, "model": {**manifest["model"], "digest": "sha256:" + "0" * 64}})
    try:
        for reader in (client, offline):
            with pytest.raises(ConflictError, match="now has weights .*run the index step that writes the space"):
                reader.spaces.search("test-space", "how do plants make food from light", k=1)
    finally:
        client.engram.write_json(key, manifest)

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


def test_a_runs_params_may_name_the_model_a_step_calls(served, tmp_path: Path) -> None:
    """``modelRef: ${model}`` with a ``model`` param: admission took it and every run then failed with
    "model '${model}' is not registered". The model is named once, when the run starts."""
    import yaml

    from mnemos.errors import NotFoundError, ValidationError

    path = model_pipeline(tmp_path, space="param-space", limit=2)
    doc = yaml.safe_load(path.read_text())
    doc["metadata"]["name"] = "gen-by-param"
    doc["spec"]["params"]["model"] = "echo-syn"
    doc["spec"]["steps"][1]["modelRef"] = "${model}"
    doc["spec"]["steps"] = doc["spec"]["steps"][:2]  # prepare, infer
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    served.client.admit(path)  # admission accepts it, as before
    run = served.client.pipelines.run(path, progress=False)
    state = run.state()
    assert state["status"] == "succeeded", state["error"]
    assert state["steps"]["infer"]["definition"]["modelRef"] == "echo-syn"
    assert {json.loads(line)["model"] for line in run.read("results").decode().splitlines()} == {"echo-syn"}
    with pytest.raises(NotFoundError, match=r"modelRef: model 'absent' is not registered"):
        served.client.pipelines.run(path, params={"model": "absent"}, progress=False)
    with pytest.raises(ValidationError, match=r"modelRef: '\.\./echo-syn' \(from the run's params\) is not a model"):
        served.client.pipelines.run(path, params={"model": "../echo-syn"}, progress=False)
