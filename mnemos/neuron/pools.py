"""NEURON pools: groups of ``Worker`` actors by capability (``cpu-a``, ``gpu-a`` …), from Settings.

A pool is *declared* by ``settings.neuron.pools`` and *active* when it has workers. A pool whose
resources the cluster lacks (``gpu-a`` without GPUs, a selector no node carries) stays declared
with a reason and no workers, so that admission can name it; ``refresh()`` starts it once the
cluster has grown. A pool with ``awaitCapacity`` (the cluster grows nodes for it: KubeRay's
autoscaler, KEDA) is active anyway: its workers wait for a node, and asking for them is what
makes the autoscaler add one. Workers are owned by the CORTEX actor that made the ``PoolSet``:
they die with it and a restarted CORTEX makes new ones.

Selectors (``{accelerator: nvidia}``) are Ray node labels: a pool is placed with a
``label_selector`` when some node carries the selector's keys; on a cluster whose nodes carry
none of them (a laptop) the selector only describes the pool to jobs. A node that joins later with
such a key (a head started first, its labelled workers after it, as on KubeRay) makes the pools
that select on it move: ``trim`` starts their workers again under the label selector and stops
the ones placed without it once their jobs ended. A key once enforced stays enforced, also when
every node carrying it is lost (the pool then waits for such a node instead of running elsewhere).

Pools follow the queue: a pool starts with ``minWorkers`` (0: none at all), CORTEX calls
``grow`` when jobs for it wait and every worker is full (up to ``maxWorkers``), and ``trim``
stops workers idle for ``idleTimeout`` (down to ``minWorkers``). The workers wanted are asked
of Ray's autoscaler (``ray.autoscaler.sdk.request_resources``), so that on KubeRay the cluster
grows nodes for them and gives them back.

While a pool's jobs are short (``SHORT_SECONDS`` on average), a worker whose threads are all
busy still takes more: they wait on it for a thread (``mnemos.neuron.worker``). How many is the
pool's ``prefetch``; unset, it is ``maxConcurrency``, and more while the jobs are so short that
those would end before CORTEX could send the next ones: enough for ``AHEAD_SECONDS`` of work, up
to ``AHEAD_MOST`` times the worker's threads.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from mnemos._actors import NAMESPACE, NEURON_PREFIX
from mnemos.config import PoolConfig
from mnemos.engram import Engram
from mnemos.neuron.worker import Worker
from mnemos.trace import metrics

__all__ = ["AHEAD_MOST", "AHEAD_SECONDS", "NAMESPACE", "SHORT_SECONDS", "Pool", "PoolSet", "WorkerSlot", "unfit_reason"]

SHORT_SECONDS = 0.2
"""A pool whose jobs run shorter than this on average has jobs sent ahead to its workers."""
AHEAD_SECONDS = 0.025
"""Unless ``prefetch`` is set, a worker holds about this much work beyond its threads (and at least
maxConcurrency jobs): roughly the round trip from a job's end to CORTEX's next ``start`` on it."""
AHEAD_MOST = 4
"""Unless ``prefetch`` is set, a worker holds at most this many times its threads beyond them."""
LABELS_EVERY_S = 5.0
"""How often ``follow_labels`` looks for nodes whose labels a pool's workers were placed without."""


@dataclass(eq=False)
class WorkerSlot:
    """One worker actor and the jobs it runs now."""

    name: str
    pool: str
    handle: Any
    capacity: int  # threads
    inflight: int = 0  # attempts sent here and not ended: running, or waiting for a thread
    alive: bool = True
    jobs: dict[str, int] = field(default_factory=dict)  # job id -> attempt, in the order sent here
    gave_back: bool = False  # it gave an attempt back unstarted: none is sent ahead until one ends
    reader: Any = None  # the scheduler's task reading this worker's completions
    idle_since: float = field(default_factory=time.monotonic)  # when inflight last dropped to 0
    retiring: bool = False  # placed without its pool's label selector: takes no jobs, stops when idle

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pool": self.pool, "inflight": self.inflight, "capacity": self.capacity}


@dataclass(eq=False)
class Pool:
    """A declared pool, its workers, and why it has none when it has none."""

    config: PoolConfig
    workers: list[WorkerSlot] = field(default_factory=list)
    reason: str | None = None
    label_selector: dict[str, str] | None = None
    ready: bool = False  # the cluster can hold its workers (refresh found no reason against it)
    run_seconds: float | None = None  # its jobs' run time, a moving average

    def observe(self, seconds: float) -> None:
        """Count one job's run time in the average that decides whether jobs are sent ahead."""
        self.run_seconds = seconds if self.run_seconds is None else 0.8 * self.run_seconds + 0.2 * seconds

    def limit(self, slot: WorkerSlot) -> int:
        """The attempts ``slot`` may hold: its threads, plus ``ahead`` while the jobs are short."""
        run = self.run_seconds
        if run is None or run >= SHORT_SECONDS or slot.gave_back:
            return slot.capacity
        return slot.capacity + self.ahead(slot.capacity, run)

    def ahead(self, threads: int, run_seconds: float) -> int:
        """Jobs a worker with ``threads`` threads holds beyond them, when jobs run ``run_seconds``.

        ``prefetch`` when set. Else ``maxConcurrency``, or, for jobs so short that this many would
        end before the next ones could arrive, enough for ``AHEAD_SECONDS`` of work on its threads
        (no-op jobs: ``AHEAD_MOST`` times its threads), so that its threads do not wait on CORTEX.
        """
        if self.config.prefetch is not None:
            return self.config.prefetch
        fill = math.ceil(threads * AHEAD_SECONDS / max(run_seconds, 1e-6))
        return max(self.config.max_concurrency, min(fill, AHEAD_MOST * threads))

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def active(self) -> bool:
        """It can run jobs: it has workers, or may start some (a pool scaled to zero)."""
        return bool(self.workers) or (self.ready and self.config.most > 0)

    @property
    def has_gpus(self) -> bool:
        return self.config.num_gpus > 0

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "name": cfg.name,
            "selector": dict(cfg.selector),
            "size": cfg.size,
            "minWorkers": cfg.fewest,
            "maxWorkers": cfg.most,
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
        self.grown = 0
        self.trimmed = 0
        self._checked = -1e9
        self._labels_checked = -1e9
        self._routes: dict[str, str] = {}
        self._requested: list[dict[str, float]] | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers of every pool the cluster can hold."""
        self.refresh()

    def refresh(self, throttle: float = 0.0) -> bool:
        """Start pools that had no workers and now can; returns whether one started.

        ``throttle``: do nothing if the cluster was looked at less than that many seconds ago.
        """
        idle = [p for p in self.pools.values() if not p.ready]
        now = time.monotonic()
        if not idle or now - self._checked < throttle:
            return False
        self._checked = now
        gpus, node_labels = _cluster()
        started = False
        for pool in idle:
            pool.reason = self._why_not(pool.config, gpus, node_labels)
            if pool.reason is not None and pool.config.await_capacity and pool.config.most > 0:
                pool.reason = None  # its workers wait for the nodes the autoscaler adds
            if pool.reason is None:
                keys = set().union(*(labels.keys() for labels in node_labels)) if node_labels else set()
                enforced = {k: v for k, v in pool.config.selector.items() if k in keys}
                pool.label_selector = enforced or None
                pool.ready = True
                pool.workers = [self._spawn(pool) for _ in range(pool.config.fewest)]
                self._sized(pool)
                started = True
        if started:
            self._routes.clear()
        return started

    @staticmethod
    def _why_not(cfg: PoolConfig, gpus: float, node_labels: list[dict[str, str]]) -> str | None:
        if cfg.most == 0:
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
        name = f"{NEURON_PREFIX}{cfg.name}-{uuid.uuid4().hex[:8]}"
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
        self.replaced += 1
        metrics.NEURON_WORKER_RESTARTS.inc(pool=pool.name)
        if len(pool.workers) >= pool.config.fewest:
            self._sized(pool)
            return None  # above its minimum: grow() starts one again if jobs wait for it
        fresh = self._spawn(pool)
        pool.workers.append(fresh)
        self._sized(pool)
        return fresh

    # -- autoscaling --------------------------------------------------------------------------
    def grow(self, pool: Pool, waiting: int) -> int:
        """Start workers for ``waiting`` jobs that found every worker of ``pool`` full; returns how many."""
        room = pool.config.most - len(pool.workers)
        if not pool.ready or room <= 0 or waiting <= 0:
            return 0
        count = min(room, math.ceil(waiting / pool.config.max_concurrency))
        pool.workers.extend(self._spawn(pool) for _ in range(count))
        self.grown += count
        self._sized(pool)
        return count

    def trim(self, now: float | None = None) -> int:
        """Stop workers idle for their pool's ``idleTimeout``, down to ``minWorkers``; returns how many."""
        import ray

        now = time.monotonic() if now is None else now
        self.follow_labels(now)
        stopped = 0
        for pool in self.pools.values():
            for slot in [s for s in pool.workers if s.retiring and not s.inflight]:
                slot.alive = False
                pool.workers.remove(slot)
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(slot.handle, no_restart=True)
                stopped += 1
            for slot in [s for s in pool.workers if not s.retiring]:
                if sum(not s.retiring for s in pool.workers) <= pool.config.fewest:  # busy retiring ones will go
                    break
                if slot.alive and not slot.inflight and now - slot.idle_since >= pool.config.idle_timeout:
                    slot.alive = False
                    pool.workers.remove(slot)
                    with contextlib.suppress(Exception):  # already gone
                        ray.kill(slot.handle, no_restart=True)
                    stopped += 1
            if stopped:
                self._sized(pool)
        self.trimmed += stopped
        return stopped

    def follow_labels(self, now: float | None = None, throttle: float = LABELS_EVERY_S) -> int:
        """Move the pools whose selector names a label key that a node now carries and that their
        workers were placed without: new workers start under the label selector, the old ones take
        no more jobs and stop once idle (``trim``). Returns how many workers were started.

        ``throttle``: do nothing if the cluster was looked at less than that many seconds ago.
        """
        import ray

        now = time.monotonic() if now is None else now
        loose = [p for p in self.pools.values() if p.ready and set(p.config.selector) - set(p.label_selector or {})]
        if not loose or now - self._labels_checked < throttle or not ray.is_initialized():
            return 0
        self._labels_checked = now
        _, node_labels = _cluster()
        keys = set().union(*(labels.keys() for labels in node_labels)) if node_labels else set()
        started = 0
        for pool in loose:
            kept = pool.label_selector or {}
            enforced = {k: v for k, v in pool.config.selector.items() if k in keys or k in kept}
            if enforced == kept:
                continue
            pool.label_selector = enforced
            misplaced = [slot for slot in pool.workers if not slot.retiring]
            for slot in misplaced:
                slot.retiring = True
            fresh = [self._spawn(pool) for _ in range(max(len(misplaced), pool.config.fewest))]
            pool.workers.extend(fresh)
            started += len(fresh)
            self._sized(pool)
        if started:
            self._routes.clear()
        return started

    def wanted(self) -> list[dict[str, float]]:
        """One resource bundle per worker wanted now (for the autoscaler)."""
        bundles = []
        for pool in self.pools.values():
            shape = {k: v for k, v in (("CPU", pool.config.num_cpus), ("GPU", pool.config.num_gpus)) if v > 0}
            if shape:
                bundles.extend(dict(shape) for _ in pool.workers)
        return bundles

    def request_capacity(self) -> bool:
        """Tell Ray's autoscaler what the pools want, when it changed; returns whether it asked."""
        bundles = self.wanted()
        if bundles == self._requested:
            return False
        self._requested = bundles

        def ask() -> None:
            try:
                from ray.autoscaler.sdk import request_resources

                request_resources(bundles=bundles)
            except Exception as exc:  # noqa: BLE001 - no autoscaler API here: the pool still runs
                import logging

                logging.getLogger(__name__).debug("request_resources failed: %s", exc)

        threading.Thread(target=ask, name="neuron-request-resources", daemon=True).start()
        return True

    def _sized(self, pool: Pool) -> None:
        metrics.NEURON_WORKERS.set(len(pool.workers), pool=pool.name)

    def route(self, request: dict[str, Any]) -> str:
        """The pool a job asking ``request`` goes to first (``none`` when none can run it)."""
        key = repr(sorted(request.items())) if request else ""
        name = self._routes.get(key)
        if name is None:
            fits = self.candidates(request)
            name = self._routes[key] = fits[0].name if fits else "none"
        return name

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
        """The least busy worker with a free thread, from the first pool in order that has one;
        else the least busy one that may hold the job until a thread frees (``Pool.limit``)."""
        for ahead in (False, True):
            for pool in pools:
                best: WorkerSlot | None = None
                for slot in pool.workers:
                    room = pool.limit(slot) if ahead else slot.capacity
                    if slot.retiring or not slot.alive or slot.inflight >= room:
                        continue
                    if best is None or slot.inflight < best.inflight:
                        best = slot
                if best is not None:
                    best.inflight += 1
                    return best
        return None

    def has_room(self) -> bool:
        """Some live worker of a pool can take a job."""
        return any(
            s.alive and not s.retiring and s.inflight < p.limit(s) for p in self.pools.values() for s in p.workers
        )

    @staticmethod
    def release(slot: WorkerSlot) -> None:
        slot.inflight = max(0, slot.inflight - 1)
        if not slot.inflight:
            slot.idle_since = time.monotonic()

    def workers(self) -> list[WorkerSlot]:
        return [slot for pool in self.pools.values() for slot in pool.workers]

    def describe(self) -> list[dict[str, Any]]:
        return [pool.describe() for pool in self.pools.values()]
