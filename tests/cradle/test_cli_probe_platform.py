"""The `mnemos` CLI against a platform `mnemos up` started, as a user meets it in a shell: Ctrl-C
during a wait or a watch ends the command with exit 130 and no traceback, and says what it left
running; ``-o json`` prints a JSON document. Real processes in a private HOME, MNEMOS_HOME and
Ray temp dir, so other clusters on this machine are neither seen nor disturbed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from tests_support import REPO, free_port, until

SLOW = """\
apiVersion: synkron.mnemos.dev/v1
kind: Pipeline
metadata: {name: probe-slow}
spec:
  steps:
    - name: tick
      script: |
        echo started; sleep 600; echo done > "$MNEMOS_OUTPUT_OUT"
      outputs: [{name: out}]
"""


@pytest.fixture(scope="module")
def shell() -> Iterator[dict[str, str]]:
    """A new shell's environment (private HOME, Ray temp dir, MNEMOS_HOME, ports) with a platform up."""
    base = Path(tempfile.mkdtemp(prefix="mnemos-cliprobe-"))
    (base / "home" / ".ray").mkdir(parents=True)
    raytmp = tempfile.mkdtemp(prefix="rp", dir="/tmp")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "MNEMOS_")) and k not in ("TMPDIR", "NO_COLOR")}  # fmt: skip
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "HOME": str(base / "home"), "RAY_TMPDIR": raytmp,
            "MNEMOS_HOME": str(base / "mnemos"), "MNEMOS_RAY__DASHBOARD_PORT": str(free_port()),
            "MNEMOS_RELAY__PORT": str(free_port())}  # fmt: skip
    haproxy_folders = set(Path(tempfile.gettempdir()).glob(f"mnemos-{os.getuid()}-*"))
    up = _mnemos(env, "up", timeout=420)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    yield env
    _mnemos(env, "down", timeout=180)
    shutil.rmtree(raytmp, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)
    for folder in set(Path(tempfile.gettempdir()).glob(f"mnemos-{os.getuid()}-*")) - haproxy_folders:
        shutil.rmtree(folder, ignore_errors=True)  # HAProxy's, for this MNEMOS_HOME


def _mnemos(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mnemos", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def _interrupted(env: dict[str, str], args: list[str], ready: Callable[[str], bool]) -> tuple[int, str, str]:
    """Start ``mnemos ARGS``; once ``ready(what it printed so far)`` holds, send it SIGINT as Ctrl-C
    does; its exit code, stdout and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "mnemos", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    lines: list[str] = []
    errors: list[str] = []

    def read(stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line)

    readers = [threading.Thread(target=read, args=(stream, into), daemon=True)
               for stream, into in ((proc.stdout, lines), (proc.stderr, errors))]  # fmt: skip
    for reader in readers:
        reader.start()
    try:
        until(lambda: "".join(lines), "it to be ready", ready=lambda out: ready(out) or proc.poll() is not None,
              timeout=300, interval=0.5)  # fmt: skip
        assert ready("".join(lines)), f"it ended before it waited: {''.join(lines)}"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        for reader in readers:
            reader.join(timeout=30)
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()  # type: ignore[union-attr]
    return proc.returncode, "".join(lines), "".join(errors)


def test_wraith_run_prints_a_json_document(shell: dict[str, str]) -> None:
    """`mnemos wraith run retention -o json` printed its line of text, no document."""
    proc = _mnemos(shell, "wraith", "run", "retention", "-o", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout)
    assert answer["task"] == "retention" and answer["status"] == "submitted" and answer["job"], answer


def test_ctrl_c_stops_a_watch_with_exit_130(shell: dict[str, str], tmp_path: Path) -> None:
    """`mnemos get policy -w` stopped by Ctrl-C exited 0 (over `--url`: 130)."""
    policy = tmp_path / "policy.yaml"
    changes = iter(range(1000))

    def watching(out: str) -> bool:
        if "policy/probe-watch" in out:  # it printed a change: it is watching
            return True
        if "KIND" in out:  # listed: change the policy until the watch shows it
            policy.write_text(f"apiVersion: genome.mnemos.dev/v1\nkind: Policy\nmetadata:\n  name: probe-watch\n"
                              f"  labels: {{change: '{next(changes)}'}}\nspec: {{}}\n")  # fmt: skip
            assert _mnemos(shell, "apply", "-f", str(policy)).returncode == 0
        return False

    code, out, err = _interrupted(shell, ["get", "policy", "-w"], watching)
    assert code == 130 and "Traceback" not in err, out + err


def test_ctrl_c_during_a_wait_says_the_job_goes_on(shell: dict[str, str]) -> None:
    """Ctrl-C during `jobs submit --wait` exited without a word: the job went on, unmentioned."""

    def running() -> bool:
        listed = _mnemos(shell, "jobs", "list", "-s", "running", "-o", "json")
        return any(j["function"] == "mnemos.cortex.testing:sleep" for j in json.loads(listed.stdout or "[]"))

    code, out, err = _interrupted(shell, ["jobs", "submit", "mnemos.cortex.testing:sleep", "600", "--wait"],
                                  lambda _: running())  # fmt: skip
    assert code == 130 and "Traceback" not in err, out + err
    assert " was not cancelled: `mnemos jobs get " in err, err
    job = err.split("job ", 1)[1].split()[0]
    assert json.loads(_mnemos(shell, "jobs", "get", job, "-o", "json").stdout)["status"] == "running"
    assert _mnemos(shell, "jobs", "cancel", job).returncode == 0


def test_ctrl_c_during_a_run_says_the_run_goes_on(shell: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "slow.yaml").write_text(SLOW)
    code, out, err = _interrupted(shell, ["run", str(tmp_path / "slow.yaml"), "--no-cache"],
                                  lambda out: " started\n" in out)  # fmt: skip
    assert code == 130 and "Traceback" not in err, out + err
    run = out.split("run ", 1)[1].split()[0]
    assert f"run {run} was not cancelled: `mnemos runs get {run}` shows it, `mnemos runs cancel {run}`" in err, err
    assert _mnemos(shell, "runs", "cancel", run).returncode == 0


def test_ctrl_c_stops_following_a_jobs_log_with_exit_130(shell: dict[str, str]) -> None:
    """`mnemos jobs logs -f JOB` stopped by Ctrl-C exited 0, as if the job had ended."""
    submitted = _mnemos(shell, "jobs", "submit", "mnemos.cortex.testing:ticker", "-k", "count=100000", "-o", "json")
    job = json.loads(submitted.stdout)["id"]
    code, out, err = _interrupted(shell, ["jobs", "logs", job, "-f"], lambda out: "tick" in out)
    assert code == 130 and "Traceback" not in err, out + err
    assert _mnemos(shell, "jobs", "cancel", job).returncode == 0


def test_a_failed_run_says_how_to_resume_it_first(shell: dict[str, str], tmp_path: Path) -> None:
    """The resume hint came after the error, whose last lines are what the script printed: it
    dangled alone on a line of its own, after the script's output."""
    (tmp_path / "fail.yaml").write_text(
        "apiVersion: synkron.mnemos.dev/v1\nkind: Pipeline\nmetadata: {name: probe-fail}\nspec:\n  steps:\n"
        "    - name: boom\n      script: echo last words; exit 3\n      outputs: [{name: out}]\n"
    )
    proc = _mnemos(shell, "run", str(tmp_path / "fail.yaml"), "--no-progress")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = proc.stdout.split("run ", 1)[1].split()[0]
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"error: run {run} failed (resume it with `mnemos resume {run}`): step 'boom'"), first
    assert proc.stderr.rstrip().endswith("last words"), proc.stderr
