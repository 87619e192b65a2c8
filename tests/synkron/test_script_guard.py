"""A script step's processes die with the NEURON worker that runs them: a probe killed a worker
mid-step and its script's ``sleep`` kept running after the step was declared failed (and again when
it was resumed). The script runs under a guard that kills its process group when the worker dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests_support import until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")

WORKER = textwrap.dedent("""
    import os, sys
    from mnemos.synkron.steps import _run_script
    print(_run_script(sys.argv[1], {"PATH": os.environ["PATH"]}, sys.argv[2], None))
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_a_scripts_processes_die_with_the_worker(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! > {pids}; sleep 300"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, script, str(tmp_path)], start_new_session=True)
    try:
        until(lambda: pids.exists() and pids.read_text().strip(), "the script started", timeout=20)
        child = int(pids.read_text())
        assert _alive(child)
        worker.send_signal(signal.SIGKILL)  # as a lost worker, or its node, goes
        worker.wait(timeout=30)
        until(lambda: not _alive(child), "the script's process died with its worker", timeout=10)
    finally:
        worker.kill()


def test_a_guarded_script_keeps_its_exit_code_and_output(tmp_path: Path) -> None:
    from mnemos.synkron.steps import _run_script

    code, log = _run_script("echo out; echo err >&2; exit 3", {"PATH": os.environ["PATH"]}, str(tmp_path), None)
    assert (code, log) == (3, "out\nerr\n")
    code, _ = _run_script("kill -TERM $$", {"PATH": os.environ["PATH"]}, str(tmp_path), None)
    assert code == 128 + signal.SIGTERM  # a script a signal ended: as a shell reports it
