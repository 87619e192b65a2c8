"""The detached TRACE actors (span collector, metrics aggregator): how they are reached."""

from __future__ import annotations

import sys
from typing import Any

from mnemos._actors import NAMESPACE

_REMOTE: dict[type, Any] = {}


def ray_connected() -> bool:
    """Whether this process is connected to Ray (never imports Ray for a process that does not use it)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def ensure_named(cls: type, name: str, *, max_concurrency: int) -> Any:
    """Get or create the detached, restartable, CPU-less actor ``name`` of class ``cls``."""
    import ray

    if cls not in _REMOTE:
        _REMOTE[cls] = ray.remote(cls)
    return _REMOTE[cls].options(
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_restarts=-1, max_concurrency=max_concurrency,
    ).remote()  # fmt: skip
