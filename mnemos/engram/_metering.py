"""ENGRAM's blob operations on ``/metrics``: how many, how long, how many bytes, how many failed.

``@metered("put")`` on an ``Engram`` method records, per call:

- ``mnemos_engram_operations_total{op, backend, result}`` (``result``: ``ok`` or the error's class);
- ``mnemos_engram_operation_seconds{op, backend}``;
- ``mnemos_engram_bytes_total{op, backend}`` when the size is known (bytes written by ``put`` and
  ``put_file``, read by ``get``).

``backend`` is the filesystem's protocol (``file``, ``s3``). The metric objects come from TRACE's
catalogue on first use, so importing ENGRAM does not import TRACE.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["metered"]

F = TypeVar("F", bound=Callable[..., Any])
_METRICS: dict[str, Any] = {}


def _metrics() -> dict[str, Any]:
    if not _METRICS:
        from mnemos.trace import metrics

        _METRICS.update(
            ops=metrics.counter(
                "mnemos_engram_operations_total", "ENGRAM blob operations by op, backend and result.",
                ("op", "backend", "result")),
            seconds=metrics.histogram(
                "mnemos_engram_operation_seconds", "ENGRAM blob operation latency in seconds.", ("op", "backend")),
            bytes=metrics.counter(
                "mnemos_engram_bytes_total", "Bytes ENGRAM wrote (put) and read (get) by op and backend.",
                ("op", "backend")),
        )  # fmt: skip
    return _METRICS


def _size(op: str, args: tuple[Any, ...], result: Any) -> int | None:
    if op == "put" and args and isinstance(args[0], (bytes, bytearray, memoryview)):
        return len(args[0])
    if op == "put_file" and args:
        return os.path.getsize(args[0])
    if op == "get" and isinstance(result, (bytes, bytearray)):
        return len(result)
    return None


def metered(op: str) -> Callable[[F], F]:
    """Record each call of an ``Engram`` method as operation ``op`` (telemetry never fails the call)."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            outcome = "ok"
            result = None
            try:
                result = method(self, *args, **kwargs)
                return result
            except BaseException as exc:
                outcome = type(exc).__name__
                raise
            finally:
                try:
                    m = _metrics()
                    protocol = getattr(self, "fs", None) and self.fs.protocol
                    backend = str(protocol[0] if isinstance(protocol, (tuple, list)) else protocol or "file")
                    m["ops"].inc(op=op, backend=backend, result=outcome)
                    m["seconds"].observe(time.perf_counter() - start, op=op, backend=backend)
                    if outcome == "ok" and (size := _size(op, args, result)) is not None:
                        m["bytes"].inc(size, op=op, backend=backend)
                except Exception:  # noqa: BLE001, S110 - telemetry never fails an ENGRAM call
                    pass

        return call  # type: ignore[return-value]

    return wrap
