"""A script step with ``image`` stops when its run no longer wants it, as one on the worker does.

Such a step runs ``_run_script`` in a Ray task whose runtime env is the image (Ray runs it with
podman). The step's thread waited in one ``ray.get``: a cancelled run (``wanted()`` false) was never
looked at, and the exception that cancels a job was not raised until the script ended, so the
script went on in its container for as long as it liked, the run long over. Now the thread waits in
short steps and stops the task, which kills the script's process group.

podman cannot run here (no container runtime on this machine): the test gives the task no image
(``_image_env``, the one line that names it), so the same Ray task runs on a plain worker; the rest
is the real path, on the session's Ray cluster.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests_support import until

from mnemos.synkron import steps


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"  # a zombie is gone


def _started(tmp_path: Path, wanted: Any, out: dict[str, Any]) -> tuple[threading.Thread, int]:
    """The step's call in a thread (its result in ``out``), and the pid of its script's ``sleep``."""
    pidfile = tmp_path / "sleep.pid"
    script = f"sleep 120 & echo $! > {pidfile}; wait"

    def call() -> None:
        try:
            out["result"] = steps._run_in_image("img:test", script, {"LANG": "C.UTF-8"}, str(tmp_path), None, [],
                                                wanted=wanted)  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - what the job's thread raised is the result here
            out["raised"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the script to start", timeout=120)
    return thread, int(pidfile.read_text())


@pytest.fixture()
def no_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "_image_env", lambda image: {})  # podman cannot run here (module docstring)


@pytest.mark.usefixtures("ray_cluster", "no_image")
def test_a_step_the_run_cancelled_stops_in_its_container(tmp_path: Path) -> None:
    cancelled = threading.Event()
    out: dict[str, Any] = {}
    thread, pid = _started(tmp_path, lambda: not cancelled.is_set(), out)
    assert _alive(pid)
    cancelled.set()
    thread.join(steps._WANTED_CHECK_S + steps._STOP_GRACE_S + 10)
    assert out.get("result") == (137, "stopped: the step was cancelled"), out
    until(lambda: not _alive(pid), "the script's sleep to be killed", timeout=15)


@pytest.mark.usefixtures("ray_cluster", "no_image")
def test_a_cancelled_job_stops_its_script(tmp_path: Path) -> None:
    out: dict[str, Any] = {}
    thread, pid = _started(tmp_path, None, out)
    assert thread.ident is not None
    steps._raise_in(thread.ident, steps._Stop)  # as a job's cancel reaches the thread that runs it
    started = time.monotonic()
    thread.join(steps._WANTED_CHECK_S + steps._STOP_GRACE_S + 10)
    assert isinstance(out.get("raised"), steps._Stop) and time.monotonic() - started < 15, out
    until(lambda: not _alive(pid), "the script's sleep to be killed", timeout=15)
