"""A queue an operator stops declaring: CORTEX fails its unfinished jobs at restart, naming the
queue, and those jobs stay listable by it (``list(queue=...)``) while they are in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cortex_support import PrivateCortex, wait_until

from mnemos.config import QueueConfig
from mnemos.cortex.job import JobSubmission
from mnemos.errors import ValidationError

T = "mnemos.cortex.testing"


def test_a_removed_queues_jobs_fail_at_restart_and_stay_listable(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    gate = tmp_path / "held"
    declared = cortex_settings.cortex.queues
    first = PrivateCortex(tmp_path, cortex_settings, queues={**declared, "old": QueueConfig()})
    try:
        [job_id] = first.call("submit_many", [JobSubmission(id="on-old", function=f"{T}:wait_for_file",
                                                            args=[str(gate)], queue="old")])  # fmt: skip
        wait_until(Path(f"{gate}.started").exists, what="the job to start")
        assert [j["id"] for j in first.call("list", "old")] == [job_id]
    finally:
        first.close()
        gate.touch()  # the orphaned attempt ends
    second = PrivateCortex(tmp_path, cortex_settings)  # the same journal; "old" no longer declared
    try:
        [job] = second.call("list", "old")
        assert job["id"] == job_id and job["status"] == "failed", job
        assert "queue 'old' is no longer declared" in second.call("get", job_id)["error"]
        with pytest.raises(ValidationError, match="'nope' is not declared; declared queues: default") as typo:
            second.call("list", "nope")  # a queue no job ever had is still a typo
        assert "old" not in typo.value.message
        with pytest.raises(ValidationError, match="'old' is not declared"):  # nor may new jobs go there
            second.call("submit_many", [JobSubmission(id="new-on-old", function=f"{T}:noop", queue="old")])
    finally:
        second.close()
