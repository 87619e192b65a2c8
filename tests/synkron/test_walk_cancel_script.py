"""Cancelling a run stops its running script step: the step's CORTEX job was cancelled, but a job
that runs is abandoned on its worker, not stopped, and the script (``sleep 300``, a loop writing
somewhere) ran on to its end after the run said ``cancelled``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests_support import until


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status  # killed, not yet reaped by its (new) parent


def test_cancelling_a_run_stops_its_running_script(client: Any, pipelines: Any, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    path = pipelines.write([{"name": "nap", "script": f"sleep 300 &\necho $$ $! > {pids}.tmp\nmv {pids}.tmp {pids}\n"
                                                       "wait"}], name="cancel-script")  # fmt: skip
    run = client.pipelines.run(str(path), wait=False, progress=False, cache=False)
    until(pids.exists, "the script started", timeout=150)
    shell, sleeper = (int(p) for p in pids.read_text().split())
    assert not _gone(shell) and not _gone(sleeper)
    client.pipelines.cancel(run.id)
    assert run.wait(timeout=120)["status"] == "cancelled"
    until(lambda: _gone(shell) and _gone(sleeper), "the cancelled step's script stopped", timeout=150)
    assert os.path.exists(pids)
