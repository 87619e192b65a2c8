"""Embedded, a registered pipeline runs by name on the files applied with it (``spec.files``),
whatever the working directory: before, a relative ``data/…`` was looked up where the run started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

PIPELINE = """\
apiVersion: synkron.mnemos.dev/v1
kind: Pipeline
metadata: {name: embedded-prompts}
spec:
  steps:
    - name: prepare
      call: mnemos.synkron.steps:prepare_prompts
      params: {source: data/prompts.jsonl}
      outputs: [{name: prompts}]
"""


def test_a_registered_pipeline_runs_by_name_on_its_applied_files(client: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    folder = tmp_path / "repo" / "pipelines"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "prompts.jsonl").write_text(json.dumps({"prompt": "applied bytes"}) + "\n")
    (folder / "pipeline.yaml").write_text(PIPELINE)
    client.apply(folder / "pipeline.yaml")
    (folder / "data" / "prompts.jsonl").write_text(json.dumps({"prompt": "edited, not applied"}) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = client.pipelines.run("embedded-prompts", progress=False)
    assert run.state()["status"] == "succeeded", run.state()
    assert [json.loads(line)["prompt"] for line in run.read("prompts").decode().splitlines()] == ["applied bytes"]
    assert run.state()["steps"]["prepare"]["inputs"] == ["data/prompts.jsonl"]
