"""``mnemos wraith list`` while a run is under way: the status is the last run's, not the one before."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests_support import run_cli as run

import mnemos.cli as cli
from mnemos.cli import wraith as wraith_cli
from mnemos.engram import Engram

if not any(g.name == "wraith" for g in cli.app.registered_groups):
    cli.app.add_typer(wraith_cli.app, name="wraith")


def test_the_status_of_a_run_not_ended_is_not_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", str(tmp_path / "engram"))
    monkeypatch.delenv("MNEMOS_CONFIG", raising=False)
    engram = Engram(str(tmp_path / "engram"))
    now = time.time()
    before = {"task": "backup", "run": "a", "started": now - 3600, "finished": now - 3590, "status": "failed",
              "error": "the run before", "report": {}}  # fmt: skip
    engram.write_json("wraith/runs/backup.json", before)
    state = {"lastSlot": now - 60, "nextRun": now + 3600, "lastRun": now - 5, "lastJob": "j2"}
    state["lastStatus"] = "submitted"  # (the WRAITH actor's word for a job it sent to CORTEX)
    engram.write_json("wraith/state.json", {"backup": state})

    listed = {i["name"]: i for i in json.loads(run(capsys, "wraith", "list", "-o", "json")[0])}
    assert listed["backup"]["lastStatus"] == "submitted" and listed["backup"]["lastError"] is None
    assert listed["backup"]["lastRun"] == state["lastRun"]

    engram.write_json("wraith/runs/backup.json", {**before, "started": now - 4, "finished": now, "status": "succeeded",
                                                  "error": None})  # fmt: skip
    listed = {i["name"]: i for i in json.loads(run(capsys, "wraith", "list", "-o", "json")[0])}
    assert listed["backup"]["lastStatus"] == "succeeded"
