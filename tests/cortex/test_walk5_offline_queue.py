"""``mnemos jobs list --queue`` with no platform up (read from the journal) checks the queue as
CORTEX does: one nobody declared is an error listing the declared ones, not an empty table
(it printed the table's header and exited 0, so a typo read as "no jobs")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mnemos.cortex.journal import LOG, JournalView
from mnemos.engram import Engram


def _offline_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MNEMOS_", "RAY_ADDRESS"))}
    env.update(MNEMOS_HOME=str(home), MNEMOS_CORTEX__QUEUES='{"batch": {"concurrency": 2}}')
    return subprocess.run([sys.executable, "-m", "mnemos", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_listing_an_undeclared_queue_offline_is_an_error(tmp_path: Path) -> None:
    out = _offline_cli(tmp_path, "jobs", "list", "--queue", "bacth")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "queue: 'bacth' is not declared; declared queues: batch, default, wraith" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert _offline_cli(tmp_path, "jobs", "list", "--queue", "batch").returncode == 0  # declared: an empty list


def test_a_queue_no_longer_declared_still_lists_its_jobs(local_engram: Engram) -> None:
    local_engram.append(LOG, [{"t": "submit", "id": "a", "queue": "gone", "function": "m:f", "seq": 1,
                               "maxAttempts": 3, "ts": 1.0}])  # fmt: skip
    view = JournalView(local_engram, queues=["default", "wraith"])
    assert [j["id"] for j in view.list(queue="gone")] == ["a"]
