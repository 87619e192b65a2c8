"""Embedding spaces at their edges, over the real gateway (docs/guides/pipelines.md, "Spaces"):

- a space name is a path segment of ``/v1/spaces/{space}/search``: the Python client and ``mnemos
  spaces search`` sent it as written, so ``search("../tokens#", …)`` was ``POST /v1/tokens``;
- an ``index`` step over an empty input failed with numpy's ``cannot reshape array of size 0``;
  it writes an empty space, which searches to no items;
- a space embedded in other dimensions than its model's name embeds in now (the Model was
  replaced by another) was a 500 with a traceback in the gateway's log; it is a 409 naming the space;
- ``mnemos usage --by team,team`` printed the TEAM column twice, and ``GET /v1/usage`` ignored a
  parameter it does not take (``?principl=bob``: everyone's usage, as if unfiltered).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from security_support import Gateway
from tests_support import REPO

EMB = "space-edges-emb"  # the echo runtime embeds each text in 2 dimensions


def _mnemos(gateway: Gateway, home: Path, *args: str, who: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "MNEMOS_HOME": str(home), "PYTHONPATH": str(REPO),
           "MNEMOS_URL": gateway.url, "MNEMOS_API_KEY": gateway.keys[who]}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "mnemos", *args], env=env, cwd=home, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def _error(resp: Any, status: int, param: str) -> str:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["param"] == param, error
    return str(error["message"])


def test_a_space_name_never_reaches_another_route(gateway: Gateway, tmp_path: Path) -> None:
    import mnemos
    from mnemos.errors import ValidationError

    tokens = len(gateway.store.list())
    with mnemos.connect(gateway.url, api_key=gateway.keys["admin"]) as client:
        for name in ("../tokens#", "../../v1/tokens?x=", "a/b", "Alice-Space", ""):
            with pytest.raises(ValidationError, match="not a valid space name") as refused:
                client.spaces.search(name, "plants", k=1)
            assert refused.value.param == "space"
    for name in ("../../v1/tokens?x=", "a/b"):
        proc = _mnemos(gateway, tmp_path, "spaces", "search", name, "plants", who="admin")
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert "not a valid space name" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(gateway.store.list()) == tokens  # nothing was sent to /v1/tokens
    from mnemos.errors import NotFoundError

    with mnemos.connect(gateway.url, api_key=gateway.keys["admin"]) as client:  # lineage ids alike
        for node in ("../../v1/tokens", "run:x/../../../tokens", "run:x?y"):
            with pytest.raises(NotFoundError):  # an unknown node, not GET /v1/tokens (a list, for an admin)
                client.lineage(node)


def _pipeline(folder: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": f"ix-{name}"},
           "spec": {"steps": [
               {"name": "prepare", "call": "mnemos.synkron.steps:prepare_prompts",
                "params": {"source": "data/in.jsonl"}, "outputs": [{"name": "prompts"}]},
               {"name": "index", "modelRef": EMB,
                "index": {"space": name, "input": "${prompts}", "textField": "prompt"},
                "outputs": [{"name": "index"}]}]}}  # fmt: skip
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def emb(gateway: Gateway) -> str:
    import ray

    from mnemos.relay.controller import get_controller

    gateway.client.apply([{"apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": EMB},
                           "spec": {"family": "test", "version": "1", "artifact": {"uri": "file:///dev/null"},
                                    "runtime": {"engine": "echo"}, "resources": {"cpus": 0.1}}}])  # fmt: skip
    ray.get(get_controller().wait_synced.remote(None, 240))
    return EMB


def test_an_empty_input_indexes_an_empty_space(gateway: Gateway, emb: str, tmp_path: Path) -> None:
    run = gateway.client.pipelines.run(_pipeline(tmp_path, "edges-empty", []), progress=False)
    state = run.state()
    assert state["status"] == "succeeded", state["error"]
    assert gateway.client.engram.read_json("spaces/edges-empty/manifest.json")["count"] == 0
    found = gateway.call("POST", "/v1/spaces/edges-empty/search", "developer", json={"query": "plants", "k": 3})
    assert found.status_code == 200 and found.json()["data"] == [], found.text


def test_a_space_in_other_dimensions_than_its_model_now_embeds_is_409(gateway: Gateway, emb: str,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    import numpy as np

    rows = [{"id": "p", "prompt": "how plants make food"}, {"id": "t", "prompt": "a tcp handshake opens it"}]
    run = gateway.client.pipelines.run(_pipeline(tmp_path, "edges-dims", rows), progress=False)
    assert run.state()["status"] == "succeeded", run.state()["error"]
    body = {"query": "how plants make food", "k": 2}
    found = gateway.call("POST", "/v1/spaces/edges-dims/search", "developer", json=body)
    assert found.status_code == 200 and [h["id"] for h in found.json()["data"]][0] == "p", found.text
    # As an index step leaves a space whose Model has since been replaced by one of another width.
    engram, key = gateway.client.engram, "spaces/edges-dims/manifest.json"
    buffer = io.BytesIO()
    np.save(buffer, np.eye(2, 3, dtype=np.float32), allow_pickle=False)
    engram.write_json(key, {**engram.read_json(key), "vectors": engram.put(buffer.getvalue())})
    message = _error(gateway.call("POST", "/v1/spaces/edges-dims/search", "developer", json=body), 409, "space")
    assert "in 3 dimensions" in message and "now embeds in 2" in message and "index step" in message, message


def test_usage_groups_once_and_refuses_parameters_it_does_not_take(gateway: Gateway, tmp_path: Path) -> None:
    proc = _mnemos(gateway, tmp_path, "usage", "--by", "team,model,team", who="admin")
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0].split()
    assert header[:3] == ["TEAM", "MODEL", "REQUESTS"], proc.stdout
    for query, param in (("principl=developer-b-user", "principl"), ("model=a&model=b", "model")):
        _error(gateway.call("GET", f"/v1/usage?{query}", "admin"), 422, param)
