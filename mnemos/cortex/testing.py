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

__all__ = ["add", "big", "echo", "fail", "flaky", "noop", "stamp", "shout", "sleep", "wait_for_file"]


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
    Path(f"{path}.started").write_text(str(os.getpid()))
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.05)
    return value


def big(size: int) -> bytes:
    """``size`` bytes (a result large enough to go to ENGRAM)."""
    return bytes(range(256)) * (size // 256) + bytes(size % 256)
