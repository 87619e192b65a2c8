"""What a cancelled or timed-out attempt printed is kept in its job's logs.

Such an attempt is abandoned: its worker's thread runs on, and CORTEX does not hear it end. Its
output lived only in the worker's live capture, so ``logs`` answered "" once the job was
cancelled or timed out: a job that hung and timed out three times showed nothing of where it hung.
"""

from __future__ import annotations

from typing import Any

import pytest
from cortex_support import journal_records, wait_until

from mnemos.cortex import JobCancelledError, JobFailedError

T = "mnemos.cortex.testing"


def test_a_cancelled_running_job_keeps_what_it_printed(client: Any) -> None:
    job = client.jobs.submit(f"{T}:ticker", 600, 0.1, "cancel-me")
    wait_until(lambda: "cancel-me 2/600" in job.logs(), what="the job to print")
    assert job.cancel()["status"] == "cancelled"
    with pytest.raises(JobCancelledError):
        job.result(timeout=60)
    logs = job.logs()
    assert "cancel-me 1/600\ncancel-me 2/600\n" in logs, logs
    [cancel] = [r for r in journal_records(client.engram) if r.get("id") == job.id and r["t"] == "cancel"]
    assert cancel["attempt"] == 1 and cancel["logs"]  # durable: a restart reads it back


def test_a_timed_out_attempt_keeps_what_it_printed(client: Any) -> None:
    job = client.jobs.submit(f"{T}:ticker", 100, 0.1, "hung", timeout=2, max_attempts=1)
    with pytest.raises(JobFailedError, match="timed out after 2s"):
        job.result(timeout=120)
    logs = job.logs()
    assert "hung 1/100\n" in logs, logs
