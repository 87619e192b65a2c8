"""CORTEX keeps its start-up heap out of Python's full collections (``mnemos._heap``): a full
collection over it took 110-130 ms, and every submit, start and result waited behind it."""

from __future__ import annotations

import gc
from typing import Any

import ray

from mnemos._heap import freeze_heap


def test_freeze_heap_moves_what_is_alive_to_the_permanent_generation() -> None:
    kept = [object() for _ in range(10)]
    try:
        frozen = freeze_heap()
        assert frozen == gc.get_freeze_count() > len(kept)
        assert gc.get_count()[0] < 10  # the collector's young generation starts over empty
    finally:
        gc.unfreeze()  # this test process goes on as before


def test_cortex_freezes_its_heap_once_started(cortex: Any) -> None:
    def heap(_actor: Any) -> tuple[int, int]:
        return gc.get_freeze_count(), len(gc.get_objects())

    frozen, tracked = ray.get(cortex.__ray_call__.remote(heap))
    # Ray, pydantic, the settings and the replayed journal: over a hundred thousand objects here
    # that no full collection walks any more (``tracked``: what the collector still walks)
    assert frozen > 50_000, (frozen, tracked)
