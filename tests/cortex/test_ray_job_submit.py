"""``ray job submit -- python -m mnemos jobs submit …`` against a real ``ray start --head`` cluster."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from cortex_support import RayHead


@pytest.mark.slow
def test_ray_job_submit_runs_a_cortex_job() -> None:
    import mnemos.cli

    assert ("jobs", "mnemos.cli.jobs") in mnemos.cli._GROUPS, (
        "register the jobs group: add ('jobs', 'mnemos.cli.jobs') to _GROUPS in mnemos/cli/__init__.py"
    )
    with tempfile.TemporaryDirectory(prefix="mx", dir="/tmp") as tmp:  # short: Ray's socket paths are limited
        root = Path(tmp)
        head = RayHead(root, env={"MNEMOS_HOME": str(root / "home")}).start()
        try:
            submitted = head.run(
                "ray", "job", "submit", "--address", head.dashboard, "--",
                "python", "-m", "mnemos", "jobs", "submit", "mnemos.cortex.testing:add", "2", "3", "--wait",
                "--name", "from-ray-job",
            )  # fmt: skip
            out = submitted.stdout + submitted.stderr
            assert submitted.returncode == 0, out
            assert "\n5\n" in submitted.stdout and "succeeded" in out, out
        finally:
            head.stop()
        leftovers = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True).stdout
        assert not leftovers.strip(), f"processes of the test cluster are still running: {leftovers}"
        # the job is in the journal in ENGRAM: readable with the cluster gone
        listed = head.run("python", "-m", "mnemos", "jobs", "list", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        [job] = [j for j in json.loads(listed.stdout) if j["name"] == "from-ray-job"]
        assert job["status"] == "succeeded" and job["function"] == "mnemos.cortex.testing:add"
