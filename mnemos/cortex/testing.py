"""Small job functions for tests, demos and benchmarks (``mnemos.cortex.testing:add`` …).

They are plain module functions so that they can be submitted by reference over HTTP and
from the CLI: ``mnemos jobs submit mnemos.cortex.testing:add 2 3 --wait``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from mnemos.engram import Engram

__all__ = [
    "GatedEngram", "add", "big", "echo", "fail", "flaky", "in_a_thread", "node_id", "noop", "stamp", "shout",
    "sleep", "wait_for_file",
]  # fmt: skip


def noop(*args: Any, **kwargs: Any) -> Any:
    """Return the first argument (or None): the cheapest job there is."""
    return args[0] if args else None


def add(a: float, b: float) -> float:
    return a + b


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """The arguments back, as JSON."""
    return {"args": list(args), "kwargs": kwargs}


def sleep(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def stamp(seconds: float = 0.0, value: Any = None) -> dict[str, Any]:
    """Sleep, and say when and where it ran (start/end times, pid)."""
    start = time.time()
    time.sleep(seconds)
    return {"start": start, "end": time.time(), "pid": os.getpid(), "value": value}


def shout(text: str, times: int = 1) -> int:
    """Print ``text`` to stdout and ``times`` lines to stderr; returns the pid."""
    print(text)
    for i in range(times):
        print(f"{text} #{i}", file=sys.stderr)
    return os.getpid()


def fail(message: str = "boom") -> None:
    """Always fails."""
    raise RuntimeError(message)


def flaky(marker: str, failures: int, value: Any = None) -> Any:
    """Fail the first ``failures`` calls (counted in the file ``marker``), then return ``value``."""
    path = Path(marker)
    count = int(path.read_text()) if path.exists() else 0
    path.write_text(str(count + 1))
    print(f"call {count + 1}")
    if count < failures:
        raise RuntimeError(f"flaky failure {count + 1} of {failures}")
    return value


def wait_for_file(path: str, timeout: float = 120.0, value: Any = None) -> Any:
    """Write ``<path>.started``, then wait until ``path`` exists (a test holds the job with it)."""
    started = Path(f"{path}.started")
    written = started.with_name(f"{started.name}.{os.getpid()}.tmp")
    written.write_text(str(os.getpid()))
    os.replace(written, started)  # whole or absent: a test that sees it reads the pid (it once read "")
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.05)
    return value


def node_id() -> str:
    """The Ray node the job runs on."""
    import ray

    return str(ray.get_runtime_context().get_node_id())


def big(size: int) -> bytes:
    """``size`` bytes (a result large enough to go to ENGRAM)."""
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


def in_a_thread(value: Any = None) -> Any:
    """``value``, as a thread of the worker that is not the job's own gets it back: the thread
    prints to the worker's stderr and calls ``ray.get``, as the worker's metrics flusher does."""
    import threading

    import ray

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            print("a line from a thread outside the job", file=sys.stderr)
            box["value"] = ray.get(ray.put(value))
        except BaseException as exc:  # noqa: BLE001 - reported as the job's error
            box["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise RuntimeError(box["error"])
    return box["value"]


def ticker(count: int = 5, interval: float = 0.5, text: str = "tick") -> int:
    """Print ``count`` numbered lines ``interval`` seconds apart (live job log tests)."""
    for i in range(count):
        print(f"{text} {i + 1}/{count}", flush=True)
        time.sleep(interval)
    return count


class GatedEngram(Engram):
    """An ENGRAM whose journal writes a test holds or fails from outside the CORTEX process.

    Files beside ``gate`` steer ``append`` to ``journal/cortex``; each holds the record kinds it
    applies to (``result,cancel``) or ``*``:

    * ``<gate>.block``: a write holding such a record waits while the file exists (at most
      ``hold`` seconds), after writing ``<gate>.held``: the record is applied in CORTEX's
      memory and not durable, the window a crash must not expose;
    * ``<gate>.fail``: such a write raises ``OSError`` (ENGRAM down).
    """

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None, gate: str = "", hold: float = 300):
        super().__init__(uri, storage_options)
        self.gate = gate
        self.hold = hold

    def __reduce__(self) -> tuple[Any, ...]:
        return (GatedEngram, (self.uri, self.storage_options, self.gate, self.hold))

    def _applies(self, suffix: str, records: list[dict[str, Any]]) -> bool:
        path = Path(f"{self.gate}.{suffix}")
        try:
            kinds = {k.strip() for k in path.read_text().split(",")}
        except OSError:
            return False
        return "*" in kinds or any(r.get("t") in kinds for r in records)

    def append(self, log: str, records: list[dict[str, Any]]) -> str:
        if self.gate and log == "journal/cortex":
            if self._applies("fail", records):
                raise OSError("ENGRAM is down (GatedEngram)")
            if self._applies("block", records):
                Path(f"{self.gate}.held").write_text(",".join(sorted({str(r.get("t")) for r in records})))
                deadline = time.monotonic() + self.hold
                while Path(f"{self.gate}.block").exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
        return super().append(log, records)
