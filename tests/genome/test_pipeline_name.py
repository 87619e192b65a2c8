"""A pipeline's name begins the id of each of its runs, a folder name in ENGRAM (``runs/<id>/``, at
most 255 bytes): a name too long for its runs' ids is refused when the pipeline is written (422
naming ``metadata.name``, with the limit and why); other kinds keep DNS-1123's 253 characters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests_support import REPO, model_doc, run_cli

from mnemos.engram import Engram
from mnemos.errors import ValidationError
from mnemos.genome import Registry, parse_resource
from mnemos.genome.pipeline import MAX_NAME, MAX_RUN_ID, new_run_id
from mnemos.synkron._state import state_key


def _pipeline(name: str) -> dict[str, Any]:
    return {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"steps": [{"name": "a", "script": "echo"}]}}  # fmt: skip


def test_the_longest_name_makes_run_ids_engram_stores(tmp_path: Path) -> None:
    engram = Engram(str(tmp_path))
    run_id = new_run_id("p" * MAX_NAME)
    assert len(run_id) == MAX_RUN_ID == 255
    engram.write_json(state_key(run_id), {"id": run_id})
    assert engram.read_json(state_key(run_id)) == {"id": run_id}
    with pytest.raises(OSError):  # one character more is a name no local ENGRAM can store
        engram.write_json(state_key(new_run_id("p" * (MAX_NAME + 1))), {})
    assert f"has at most {MAX_NAME} characters" in (REPO / "docs/guides/pipelines.md").read_text()


def test_a_pipeline_name_too_long_for_its_run_ids_is_refused_at_write(tmp_path: Path, capsys, monkeypatch) -> None:
    from mnemos.client import Client
    from mnemos.config import load_settings

    client = Client(load_settings(engram={"uri": str(tmp_path / "engram")}))
    for length in (MAX_NAME + 1, 253):
        doc = _pipeline("p" * length)
        for write in (client.apply, parse_resource):
            with pytest.raises(ValidationError) as refused:
                write([doc] if write == client.apply else doc)
            message = refused.value.message
            assert (refused.value.status, refused.value.param) == (422, "metadata.name")
            assert f"has {length} characters: a pipeline's name may have at most {MAX_NAME}, as its runs' ids " \
                   "(<name>-<yyyymmdd-hhmmss>-<4 hex>) are folder names of at most 255" in message  # fmt: skip
    assert client.engram.list("registry") == []
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(_pipeline("p" * (MAX_NAME + 1))))
    _, err = run_cli(capsys, "validate", "-f", "p.yaml", code=2)
    assert "metadata.name" in err and f"at most {MAX_NAME}" in err, err
    assert client.apply([_pipeline("p" * MAX_NAME)])[0].action == "created"


def test_other_kinds_keep_dns_names_of_253_characters(tmp_path: Path) -> None:
    registry = Registry(Engram(str(tmp_path)))
    model = parse_resource({**model_doc("m"), "metadata": {"name": "m" * 253}})
    assert registry.apply(model).action == "created"
    assert registry.get("Model", "m" * 253).name == "m" * 253


def test_a_stored_pipeline_with_a_name_too_long_says_how_to_repair_it_and_deletes(tmp_path: Path) -> None:
    """One stored before names were checked against run ids: it could never run (404 on its runs)."""
    engram, name = Engram(str(tmp_path)), "p" * 253
    engram.write_json(f"registry/Pipeline/{name}/00000001.json", {**_pipeline(name), "metadata": {"name": name}})
    registry = Registry(engram)
    with pytest.raises(ValidationError, match="generation 1 is stored but no longer valid: apply a corrected"):
        registry.get("Pipeline", name)
    assert registry.list("Pipeline") == []
    registry.delete("Pipeline", name)
