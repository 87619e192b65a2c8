"""Shared bits of the benchmarks: a loopback S3 server and target lines."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def deployed_serve_env(home: str) -> None:
    """Serve's environment as ``mnemos up`` gives it (HAProxy ingress, gRPC between replicas, the
    platform's own HAProxy), set in this process before Ray starts: Serve's processes read it."""
    import os
    from pathlib import Path

    from mnemos.cradle.cluster import local_serve_env
    from mnemos.relay.throughput import HIGH_THROUGHPUT_ENV

    os.environ.update(local_serve_env(HIGH_THROUGHPUT_ENV | dict(os.environ), Path(home)))


def platform_up(settings: Any, engram: Any) -> Any:
    """The control plane as ``mnemos up`` starts it, every component's actors (the span collector and
    metrics aggregator included, which otherwise start lazily, in the middle of a measurement);
    returns the relay controller's handle."""
    from mnemos.cradle import up

    return up(settings, engram)["relay"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def loopback_s3() -> Iterator[dict[str, Any]]:
    """moto's S3 server on 127.0.0.1 in its own process (as a real S3 would be); yields s3fs options."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield {
            "key": "testing",
            "secret": "testing",
            "endpoint_url": f"http://127.0.0.1:{port}",
            "client_kwargs": {"region_name": "us-west-2"},
        }
    finally:
        server.terminate()
        server.wait(10)


def best_of(fn: Callable[[], float], repeat: int) -> float:
    """Median of ``repeat`` runs of ``fn`` (each returns seconds)."""
    return statistics.median(fn() for _ in range(repeat))


def target(kind: str, name: str, value: float, op: str, goal: float) -> str:
    """``ratio name 0.94 target >= 0.9`` — the line every benchmark ends with."""
    ok = value >= goal if op == ">=" else value <= goal
    shown = f"{value:.2f}"
    if float(shown) == goal and not ok:  # 0.1045 is missed against <= 0.1: never print it as "0.10"
        shown = f"{value:.4f}"
    line = f"{kind} {name} {shown} target {op} {goal:g}"
    return line + ("" if ok else "  (MISSED)")


def throughput(serial: Callable[[int], Any], n: int, workers: int = 16) -> float:
    """Requests per second of ``workers`` threads, started together, each calling ``serial(n // workers)``."""
    per_worker = max(1, n // workers)
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers + 1)

    def work() -> None:
        try:
            barrier.wait()
            serial(per_worker)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return per_worker * workers / elapsed


def percentile_ms(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (seconds), in milliseconds."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000
