"""CORTEX keeps its start-up heap out of Python's full collections (``mnemos._heap``): a full
collection over it took 110-130 ms, and every submit, start and result waited behind it."""

from __future__ import annotations

import gc
import subprocess
import sys
from typing import Any

import ray


def test_freeze_heap_moves_what_is_alive_to_the_permanent_generation() -> None:
    """In a process of its own: in the test session's, Ray's and the clients' threads allocate while
    it runs, and the young generation's count after the freeze was theirs as often as not."""
    script = (
        "import gc\n"
        "from mnemos._heap import freeze_heap\n"
        "kept = [[] for _ in range(10)]\n"
        "frozen = freeze_heap()\n"
        "young = gc.get_count()[0]\n"
        "print(frozen, gc.get_freeze_count(), len(kept), young)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    frozen, count, kept, young = map(int, done.stdout.split())
    assert frozen == count > kept
    assert young < 10  # the collector's young generation starts over empty


def test_cortex_freezes_its_heap_once_started(cortex: Any) -> None:
    def heap(_actor: Any) -> tuple[int, int]:
        return gc.get_freeze_count(), len(gc.get_objects())

    frozen, tracked = ray.get(cortex.__ray_call__.remote(heap))
    # Ray, pydantic, the settings and the replayed journal: over a hundred thousand objects here
    # that no full collection walks any more (``tracked``: what the collector still walks)
    assert frozen > 50_000, (frozen, tracked)
