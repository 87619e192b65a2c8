"""`mnemos demo`, the main job `make demo` runs: a real process on its own embedded platform."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests_support import REPO, free_port


def test_demo_runs_the_main_job_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"RAY_ADDRESS", "MNEMOS_RAY_ADDRESS"}}
    env.update(MNEMOS_HOME=str(tmp_path / "home"), MNEMOS_RELAY__PORT=str(free_port()), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mnemos", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=420
    )
    out = proc.stdout
    assert proc.returncode == 0, f"demo exited {proc.returncode}\n{out[-4000:]}\n{proc.stderr[-4000:]}"
    assert "Traceback" not in out + proc.stderr
    for step in ("1. platform up", "3. apply deployments/local/", "5. one chat request", "6. usage",
                 "9. platform down"):  # fmt: skip
        assert step in out, step
    # the usage ledger: the pipeline's model steps charged to the local principal, the chat to the demo key
    assert re.search(r"local:\S+\s*│\s*tiny-chat\s*│\s*24\s", out), out[-4000:]  # 24 prompts, 24 requests
    assert re.search(r"demo\s*│\s*tiny-chat\s*│\s*1\s", out), out[-4000:]
    assert re.search(r"model tiny-chat: ready \(generation 1\)", out)
    assert re.search(r"run text-gen-artifacts-\S+ · text-gen-artifacts · succeeded", out)
    assert "resource:Pipeline/text-gen-artifacts@1" in out  # the lineage tree
    assert "photosynthesis" in out  # the best search hit for the plants question
    assert "ray: stopped" in out and "demo complete" in out
    assert "killed by `ray.kill`" not in out + proc.stderr  # Ray's narration of platform down is held back
