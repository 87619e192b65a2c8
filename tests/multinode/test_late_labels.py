"""A pool whose selector names a label no node carried when it started follows the label once a node
with it joins: its jobs run there, never again on the node without it (a head started before its
labelled workers, as ``mnemos up`` and KubeRay do). The scenario runs in ``late_labels_driver.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MOVE_BOUND_S = 30  # housekeeping looks at the nodes every few seconds


def test_a_pool_moves_to_a_labelled_node_that_joins_after_it_started(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MNEMOS_CONFIG")}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("late_labels_driver.py")), str(out)],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.exists(), proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert "error" not in report, report["error"]
    assert proc.returncode == 0, (report, proc.stderr[-4000:])
    assert report["before"] == ["none"] * 4  # no node carried the key: the selector only described the pool
    assert report["moveSeconds"] is not None and report["moveSeconds"] <= MOVE_BOUND_S, report
    assert report["after"] == ["cpu"] * 8  # every job on the labelled node, none on the head
    assert report["workers"] == 1  # the worker placed without the label was stopped
