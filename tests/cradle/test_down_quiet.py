"""``mnemos down`` says what it stopped, without Ray's narration of it.

While the control plane is torn down, Ray prints on its own: its driver relays the cluster's error
messages from a thread (``(raylet) … The actor is dead because it was killed by `ray.kill```, on
stdout, whatever ``log_to_driver`` says), its loggers write to stderr and its C++ core to file
descriptor 2. Here the teardown prints through those same channels (Ray's own ``print_to_stdstream``
from a thread, a ``ray.serve`` logger, a raw write to fd 2), so the test does not depend on the race
of a real cluster; the cycle on a real one is tests/cradle/test_ray_habits.py.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import ray

import mnemos
import mnemos.cli as cli
import mnemos.cli._session as session
import mnemos.cradle as cradle
from mnemos.cli.platform import down

NOISE = ("killed by `ray.kill`", "(raylet)", "core_worker.cc", "Serve is shutting down")
_ACTORS = ["ServeController", "ProxyActor", "CortexService", "GenomeService", "WraithService", "RelayController"]


def _ray_prints() -> None:
    """What Ray prints on a driver while actors it knows of are killed."""
    from ray._private.worker import print_to_stdstream

    actor = _ACTORS.pop()  # Ray holds back a line it printed before (numbers aside): each is another
    line = f"The actor {actor} is dead because it was killed by `ray.kill`."
    relay = threading.Thread(target=print_to_stdstream, args=({"lines": [line], "pid": "raylet", "is_err": False},),
                             kwargs={"ignore_prefix": False})  # fmt: skip
    relay.start()
    relay.join()
    serve = logging.getLogger("ray.serve.test-noise")
    serve.propagate = False  # ("ray"'s handler holds the stderr of the test that configured it)
    handler = logging.StreamHandler(sys.stderr)  # Ray's loggers carry handlers of their own
    serve.addHandler(handler)
    try:
        serve.warning("Serve is shutting down.")
    finally:
        serve.removeHandler(handler)
    os.write(2, b"[2026-12-03 10:00:00,000 W 1 2] core_worker.cc:123: actor died\n")


@pytest.fixture()
def platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """A platform that is up, as far as ``down`` can tell; the calls it made, in order."""
    calls: list[str] = []
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path))
    monkeypatch.setattr(session, "platform_address", lambda: "127.0.0.1:6379")

    def connect(address: str) -> None:
        calls.append(f"connect {address}")
        _ray_prints()

    def control_down() -> list[str]:
        calls.append("down")
        _ray_prints()
        logging.getLogger("mnemos.cradle").warning("warning: the metrics actor was already gone")
        return ["serve", "cortex", "genome"]

    monkeypatch.setattr(mnemos, "connect", connect)
    monkeypatch.setattr(cradle, "down", control_down)
    monkeypatch.setattr(cradle, "stop_local", lambda: calls.append("stop") or True)
    # down() disconnects its driver last: here that would cut this test session from its Ray cluster
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    return calls


def test_down_prints_what_it_stopped_and_none_of_rays_noise(platform: list[str], capfd: Any) -> None:
    connected = ray.is_initialized()  # the test session's own cluster, when an earlier test started it
    with pytest.raises(SystemExit) as exited:
        cli.main(["down"])
    assert ray.is_initialized() == connected
    out, err = capfd.readouterr()
    assert exited.value.code == 0, out + err
    assert platform == ["connect 127.0.0.1:6379", "down", "shutdown", "stop"]
    assert out.splitlines() == ["serve: stopped", "cortex: stopped", "genome: stopped", "ray: local cluster stopped"]
    for noise in NOISE:
        assert noise not in out + err, out + err
    assert err.strip() == "warning: the metrics actor was already gone"  # MNEMOS's own word stays


def test_when_down_fails_what_ray_printed_is_shown_with_the_error(
    platform: list[str], capfd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[str]:
        _ray_prints()
        raise RuntimeError("the GCS went away")

    monkeypatch.setattr(cradle, "down", broken)
    with pytest.raises(RuntimeError, match="the GCS went away"):
        down()
    out, err = capfd.readouterr()
    assert "killed by `ray.kill`" in err and "core_worker.cc" in err, err  # the context of a real error
    assert "stopped" not in out
    print("after")  # the terminal is the terminal again
    assert capfd.readouterr().out == "after\n"
