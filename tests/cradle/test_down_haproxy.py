"""``mnemos down`` and ``mnemos up`` stop the HAProxy a dead Ray head of this MNEMOS_HOME left running.

A head killed with ``kill -9`` leaves Serve's HAProxy holding the relay port (every request a 500).
Stand-ins here: Python processes whose command line is HAProxy's (``haproxy … -db -f <config>``),
so no Ray is started; the match is on the command line alone, as it is for the real binary.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests_support import until

import mnemos.cli as cli
import mnemos.cradle as cradle
from mnemos.cradle.cluster import stop_haproxy
from mnemos.errors import UnavailableError

_SLEEP = "import time; time.sleep(120)"


class _Processes:
    """Processes started for a test, with the command line ``argv`` (argv[0] as given); all killed after it."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *argv: str, code: str = _SLEEP) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([argv[0], "-c", code, *argv[1:]], executable=sys.executable)
        self.started.append(proc)
        return proc

    def haproxy(self, config: Path) -> subprocess.Popen[bytes]:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("global\n")
        return self.start("haproxy", "-db", "-f", str(config))


@pytest.fixture()
def procs() -> Iterator[_Processes]:
    started = _Processes()
    yield started
    for proc in started.started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("MNEMOS_HOME", str(home))
    for name in ("MNEMOS_URL", "MNEMOS_RAY_ADDRESS", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return home


def _runs(pid: int, argv: list[str]) -> None:
    """Wait until process ``pid`` runs ``argv`` (until its exec, it has its parent's command line)."""
    until(lambda: psutil.Process(pid).cmdline(), f"pid {pid} to run {argv[0]}", ready=lambda now: now == argv,
          timeout=30)  # fmt: skip


def _settle(*procs: subprocess.Popen[bytes]) -> None:
    """Wait until each process is running Python's ``-c`` (its command line is the one given)."""
    for proc in procs:
        _runs(proc.pid, list(proc.args))
    assert all(p.poll() is None for p in procs)


def test_down_stops_this_homes_haproxy_and_no_other(home: Path, tmp_path: Path, procs: _Processes) -> None:
    ours = procs.haproxy(home / "haproxy" / "0123abcd" / "haproxy.cfg")
    other_home = procs.haproxy(tmp_path / "other" / "haproxy" / "0123abcd" / "haproxy.cfg")
    elsewhere = procs.haproxy(tmp_path / "haproxy-serve" / "haproxy.cfg")
    reader = procs.start("tail", "-f", str(home / "haproxy" / "0123abcd" / "haproxy.cfg"))  # not a HAProxy
    _settle(ours, other_home, elsewhere, reader)

    env = {**os.environ, "MNEMOS_HOME": str(home), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "mnemos", "down"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "ray: no local cluster was running" in done.stdout
    assert f"haproxy: stopped pid {ours.pid}" in done.stdout
    assert ours.wait(timeout=10) is not None
    assert other_home.poll() is None and elsewhere.poll() is None and reader.poll() is None
    assert str(other_home.pid) not in done.stdout


def test_down_with_none_left_says_nothing_of_haproxy(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["down"])
    assert exit_.value.code == 0
    assert "haproxy" not in capsys.readouterr().out


def test_up_clears_an_orphan_of_its_own_home_first(
    home: Path, procs: _Processes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = procs.haproxy(home / "haproxy" / "0123abcd" / "haproxy.cfg")
    _settle(ours)
    seen: list[bool] = []

    def start_local(settings: object) -> dict[str, str]:
        seen.append(ours.poll() is not None)  # the port is free before the head starts
        raise UnavailableError("stop here")

    monkeypatch.setattr(cradle, "start_local", start_local)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["up"])
    assert exit_.value.code == UnavailableError.exit_code
    assert seen == [True]
    assert f"haproxy: stopped pid {ours.pid}" in capsys.readouterr().out


def test_up_leaves_a_haproxy_a_ray_process_still_runs(home: Path, procs: _Processes) -> None:
    """Only an orphan is cleared before ``up``: one whose parent is a Ray worker (Serve's proxy actor)
    belongs to a cluster that runs."""
    config = home / "haproxy" / "0123abcd" / "haproxy.cfg"
    config.parent.mkdir(parents=True)
    config.write_text("global\n")
    argv = ["haproxy", "-c", _SLEEP, "-db", "-f", str(config)]
    spawn = f"import subprocess, time\nsubprocess.Popen({argv!r}, executable={sys.executable!r})\ntime.sleep(120)\n"
    worker = procs.start("ray::ProxyActor", code=spawn)
    _settle(worker)
    (child,) = until(psutil.Process(worker.pid).children, "the worker's child")
    _runs(child.pid, argv)
    try:
        assert stop_haproxy(home, orphans_only=True) == []
        assert child.is_running()
        assert stop_haproxy(home) == [child.pid]  # `mnemos down` stops it all the same
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if child.is_running():
            child.kill()
