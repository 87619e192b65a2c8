"""Multi-node Ray: pools placed by selector across nodes; a node lost mid-run loses no job.

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


def test_jobs_survive_a_lost_node_and_pools_follow_their_selectors(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MNEMOS_CONFIG")}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("driver.py")), str(out)],
        env=env, capture_output=True, text=True, timeout=570,
    )  # fmt: skip
    assert out.exists(), proc.stderr[-4000:]
    report = json.loads(out.read_text())
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
