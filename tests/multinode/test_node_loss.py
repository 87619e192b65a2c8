"""Multi-node Ray: pools and model replicas placed by selector across nodes; a node lost mid-run
loses no job, its model replica is replaced and the gateway serves again, ``mnemos status`` shows
the node gone and a new one come.

The scenario runs in a driver process of its own (``driver.py``): a process is connected to one
Ray cluster at a time, and the session's ``ray_cluster`` stays up for the other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
RECOVERY_BOUND_S = 180  # the 200 jobs finish within this after the node is killed
MODEL_RECOVERY_BOUND_S = 120  # the lost model replica is replaced and a request succeeds within this


def _states(nodes: list[dict]) -> dict[str, str]:
    return {n["id"]: n["state"] for n in nodes}


def test_jobs_and_models_survive_a_lost_node_and_follow_their_selectors(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MNEMOS_CONFIG")}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("driver.py")), str(out)],
        env=env, capture_output=True, text=True, timeout=570,
    )  # fmt: skip
    assert out.exists(), proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert "error" not in report, report["error"]  # the driver's own traceback, whole
    assert proc.returncode == 0, (report, proc.stderr[-4000:])
    assert report["placement"] == {"cpu-a": ["cpu"], "gpu-a": ["nvidia"]}  # each pool on its labelled nodes
    assert report["gpuJobNode"] == "nvidia"
    assert report["succeededBeforeKill"] < 200  # the node died mid-run
    assert report["values"] == list(range(200))  # 0 of 200 lost
    assert report["resultRecords"] == [1]  # each result committed once
    assert report["lostRetries"] >= 1  # the lost node's jobs ran again elsewhere
    assert report["recoverySeconds"] <= RECOVERY_BOUND_S
    assert report["placementAfterLoss"]["cpu-a"] == ["cpu"]  # replaced on the surviving cpu node
    assert report["afterNodeBack"] == [i + 1 for i in range(20)]
    # The model: two replicas on the cpu nodes (one on the killed node), replaced on a live node.
    assert report["modelPlacement"] == ["cpu", "cpu"] and report["modelOnVictim"] is True
    assert report["modelAnswersBeforeKill"] is True
    recovery = report["modelRecovery"]
    assert recovery["seconds"] is not None and recovery["seconds"] <= MODEL_RECOVERY_BOUND_S, recovery
    assert report["victim"] not in recovery["nodes"] and report["modelPlacementAfterLoss"] == ["cpu", "cpu"]
    # `mnemos status` (through the gateway): the node alive, then dead, then a new cpu node alive.
    before = _states(report["statusBeforeKill"])
    assert list(before.values()).count("alive") == 3 and before[report["victim"]] == "alive"
    assert _states(report["statusAfterKill"])[report["victim"]] == "dead"
    back = {n["id"]: n for n in report["statusAfterNodeBack"]}
    assert back[report["nodeBack"]]["state"] == "alive" and back[report["nodeBack"]]["labels"] == {"accelerator": "cpu"}
    assert [n["state"] for n in back.values()].count("alive") == 3
