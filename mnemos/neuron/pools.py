"""NEURON pools: groups of ``Worker`` actors by capability (``cpu-a``, ``gpu-a`` …), from Settings.

A pool is *declared* by ``settings.neuron.pools`` and *active* when it has workers. A pool whose
resources the cluster lacks (``gpu-a`` without GPUs, a selector no node carries) stays declared
with a reason and no workers, so that admission can name it; ``refresh()`` starts it once the
cluster has grown. Workers are owned by the CORTEX actor that made the ``PoolSet``: they die
with it and a restarted CORTEX makes new ones.

Selectors (``{accelerator: nvidia}``) are Ray node labels: a pool is placed with a
``label_selector`` when some node carries the selector's keys; on a cluster whose nodes carry
none of them (a laptop) the selector only describes the pool to jobs.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from mnemos.config import PoolConfig
from mnemos.engram import Engram
from mnemos.neuron.worker import Worker

__all__ = ["NAMESPACE", "Pool", "PoolSet", "WorkerSlot", "unfit_reason"]

NAMESPACE = "mnemos"


@dataclass(eq=False)
class WorkerSlot:
    """One worker actor and the jobs it runs now."""

    name: str
    pool: str
    handle: Any
    capacity: int
    inflight: int = 0
    alive: bool = True
    jobs: dict[str, int] = field(default_factory=dict)  # job id -> attempt, running here
    reader: Any = None  # the scheduler's task reading this worker's completions

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pool": self.pool, "inflight": self.inflight, "capacity": self.capacity}


@dataclass(eq=False)
class Pool:
    """A declared pool, its workers, and why it has none when it has none."""

    config: PoolConfig
    workers: list[WorkerSlot] = field(default_factory=list)
    reason: str | None = None
    label_selector: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def active(self) -> bool:
        return bool(self.workers)

    @property
    def has_gpus(self) -> bool:
        return self.config.num_gpus > 0

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "name": cfg.name,
            "selector": dict(cfg.selector),
            "size": cfg.size,
            "workers": [w.describe() for w in self.workers],
            "numCpus": cfg.num_cpus,
            "numGpus": cfg.num_gpus,
            "maxConcurrency": cfg.max_concurrency,
            "active": self.active,
            "reason": self.reason,
        }


def unfit_reason(pool: PoolConfig, request: dict[str, Any]) -> str | None:
    """The rule (``resources.<field>``) by which ``pool`` cannot run a job asking ``request``."""
    if request.get("pool") and request["pool"] != pool.name:
        return "resources.pool"
    if float(request.get("gpus") or 0) > pool.num_gpus:
        return "resources.gpus"
    if float(request.get("cpus") or 0) > pool.num_cpus:
        return "resources.cpus"
    for key, value in (request.get("selector") or {}).items():
        if pool.selector.get(key) != value:
            return "resources.selector"
    return None


def _cluster() -> tuple[float, list[dict[str, str]]]:
    """Total GPUs and the labels of every alive node."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0))
    labels = [dict(n.get("Labels") or {}) for n in ray.nodes() if n.get("Alive")]
    return gpus, labels


class PoolSet:
    """Every declared pool; hands out worker slots and replaces dead workers.

    Args:
        configs: ``settings.neuron.pools``.
        engram: passed to each worker.
        inline_limit: ``settings.cortex.inline_result_bytes``.
        gpu_preferred: ``settings.cortex.affinity.gpuPreferred``: jobs that can use either kind of
            pool try GPU pools first.
    """

    def __init__(
        self, configs: list[PoolConfig], engram: Engram, inline_limit: int, gpu_preferred: bool = True
    ) -> None:
        self.pools = {cfg.name: Pool(cfg) for cfg in configs}
        self.engram = engram
        self.inline_limit = inline_limit
        self.gpu_preferred = gpu_preferred
        self.replaced = 0
        self._checked = -1e9

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers of every pool the cluster can hold."""
        self.refresh()

    def refresh(self, throttle: float = 0.0) -> bool:
        """Start pools that had no workers and now can; returns whether one started.

        ``throttle``: do nothing if the cluster was looked at less than that many seconds ago.
        """
        idle = [p for p in self.pools.values() if not p.active]
        now = time.monotonic()
        if not idle or now - self._checked < throttle:
            return False
        self._checked = now
        gpus, node_labels = _cluster()
        started = False
        for pool in idle:
            pool.reason = self._why_not(pool.config, gpus, node_labels)
            if pool.reason is None:
                keys = set().union(*(labels.keys() for labels in node_labels)) if node_labels else set()
                enforced = {k: v for k, v in pool.config.selector.items() if k in keys}
                pool.label_selector = enforced or None
                pool.workers = [self._spawn(pool) for _ in range(pool.config.size)]
                started = True
        return started

    @staticmethod
    def _why_not(cfg: PoolConfig, gpus: float, node_labels: list[dict[str, str]]) -> str | None:
        if cfg.size == 0:
            return "its size is 0"
        if cfg.num_gpus > 0 and gpus < cfg.num_gpus:
            return f"the cluster has {gpus:g} GPUs and each worker of this pool needs {cfg.num_gpus:g}"
        keys = set().union(*(labels.keys() for labels in node_labels)) if node_labels else set()
        enforced = {k: v for k, v in cfg.selector.items() if k in keys}
        if enforced and not any(all(lbl.get(k) == v for k, v in enforced.items()) for lbl in node_labels):
            wanted = ", ".join(f"{k}={v}" for k, v in enforced.items())
            return f"no alive node carries the labels {wanted}"
        return None

    def _spawn(self, pool: Pool) -> WorkerSlot:
        import ray

        cfg = pool.config
        name = f"neuron-{cfg.name}-{uuid.uuid4().hex[:8]}"
        options: dict[str, Any] = {
            "name": name,
            "namespace": NAMESPACE,
            "num_cpus": cfg.num_cpus,
            "num_gpus": cfg.num_gpus,
            "max_concurrency": cfg.max_concurrency + 8,  # room for logs() and ping() beside the jobs
            "max_restarts": 0,  # a dead worker is replaced by the pool, its jobs retried by CORTEX
        }
        if pool.label_selector:
            options["label_selector"] = pool.label_selector
        handle = (
            ray.remote(Worker)
            .options(**options)
            .remote(cfg.name, name, self.engram, self.inline_limit, cfg.max_concurrency)
        )
        return WorkerSlot(name=name, pool=cfg.name, handle=handle, capacity=cfg.max_concurrency)

    def replace(self, slot: WorkerSlot) -> WorkerSlot | None:
        """Swap a dead worker for a new one (once, however many of its jobs report the death)."""
        import ray

        if not slot.alive:
            return None
        slot.alive = False
        pool = self.pools[slot.pool]
        if slot in pool.workers:
            pool.workers.remove(slot)
        with contextlib.suppress(Exception):  # already gone
            ray.kill(slot.handle, no_restart=True)
        fresh = self._spawn(pool)
        pool.workers.append(fresh)
        self.replaced += 1
        from mnemos.trace import metrics

        metrics.NEURON_WORKER_RESTARTS.inc(pool=pool.name)
        return fresh

    def kill_all(self) -> None:
        import ray

        for pool in self.pools.values():
            for slot in pool.workers:
                slot.alive = False
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(slot.handle, no_restart=True)
            pool.workers = []

    # -- placement ----------------------------------------------------------------------------
    def declared(self, request: dict[str, Any]) -> tuple[list[Pool], dict[str, str]]:
        """Declared pools that fit ``request``, and for the others the rule that rules them out."""
        fits, unfit = [], {}
        for pool in self.pools.values():
            rule = unfit_reason(pool.config, request)
            if rule is None:
                fits.append(pool)
            else:
                unfit[pool.name] = rule
        return fits, unfit

    def candidates(self, request: dict[str, Any]) -> list[Pool]:
        """Active pools that fit ``request``, in affinity order (GPU pools first when preferred)."""
        fits = [p for p in self.declared(request)[0] if p.active]
        if float(request.get("gpus") or 0) > 0:
            return fits
        return sorted(fits, key=lambda p: p.has_gpus != self.gpu_preferred)

    @staticmethod
    def acquire(pools: list[Pool]) -> WorkerSlot | None:
        """The least busy worker with room, from the first pool in order that has one."""
        for pool in pools:
            best: WorkerSlot | None = None
            for slot in pool.workers:
                if slot.alive and slot.inflight < slot.capacity and (best is None or slot.inflight < best.inflight):
                    best = slot
            if best is not None:
                best.inflight += 1
                return best
        return None

    @staticmethod
    def release(slot: WorkerSlot) -> None:
        slot.inflight = max(0, slot.inflight - 1)

    def workers(self) -> list[WorkerSlot]:
        return [slot for pool in self.pools.values() for slot in pool.workers]

    def describe(self) -> list[dict[str, Any]]:
        return [pool.describe() for pool in self.pools.values()]
