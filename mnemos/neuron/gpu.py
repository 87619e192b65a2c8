"""GPU memory of the node a NEURON worker runs on, for ``/metrics`` and the GPUMemoryExhaustion alert.

Read with Ray's own GPU provider (NVML for NVIDIA, AMD SMI), the one Ray's dashboard agent uses, so
no torch or CUDA context is needed. Exported per worker (gauges are summed across processes, so
each worker reports under its own ``worker`` label; dashboards take ``max by (node, gpu)``):

``node`` is the Ray node id (as ``ray list nodes`` shows it), never an address: ``/metrics`` is
public unless ``trace.metricsAuth``, and ``/v1/status`` shows addresses to operators only.

- ``mnemos_neuron_gpus{node, worker}``: GPUs the worker's node has; ``0`` on a CPU-only node, so
  a cluster without GPUs shows 0 rather than nothing;
- ``mnemos_neuron_gpu_memory_used_bytes{node, gpu, worker}`` and
  ``mnemos_neuron_gpu_memory_total_bytes{node, gpu, worker}``: one series per GPU; none without GPUs.
"""

from __future__ import annotations

import threading
from typing import Any

from mnemos.trace import metrics

__all__ = ["GPUS", "GPU_MEMORY_TOTAL", "GPU_MEMORY_USED", "record"]

GPUS = metrics.gauge("mnemos_neuron_gpus", "GPUs on a NEURON worker's node (0 on CPU-only nodes).", ("node", "worker"))
GPU_MEMORY_USED = metrics.gauge(
    "mnemos_neuron_gpu_memory_used_bytes", "GPU memory in use on a NEURON worker's node, per GPU.",
    ("node", "gpu", "worker"))  # fmt: skip
GPU_MEMORY_TOTAL = metrics.gauge(
    "mnemos_neuron_gpu_memory_total_bytes", "GPU memory size on a NEURON worker's node, per GPU.",
    ("node", "gpu", "worker"))  # fmt: skip
_MB = 1024 * 1024
_provider: Any = None
_lock = threading.Lock()


def _gpu_usage() -> list[dict[str, Any]]:
    """Ray's reading of this node's GPUs (``[]`` without GPUs or without Ray's dashboard module)."""
    global _provider
    with _lock:
        if _provider is None:
            try:
                from ray.dashboard.modules.reporter.gpu_providers import GpuMetricProvider

                _provider = GpuMetricProvider()
                _provider.initialize()
            except Exception:  # noqa: BLE001 - no provider module or no driver: no GPUs to report
                _provider = False
        if _provider is False:
            return []
        return list(_provider.get_gpu_usage())


def record(worker: str) -> int:
    """Set the GPU gauges for ``worker`` from this node's GPUs; returns how many GPUs were seen."""
    import ray

    node = ray.get_runtime_context().get_node_id()  # not its IP address: /metrics may be public
    gpus = _gpu_usage()
    GPUS.set(len(gpus), node=node, worker=worker)
    for info in gpus:
        gpu = str(info.get("index", 0))
        GPU_MEMORY_USED.set(int(info.get("memory_used") or 0) * _MB, node=node, gpu=gpu, worker=worker)
        GPU_MEMORY_TOTAL.set(int(info.get("memory_total") or 0) * _MB, node=node, gpu=gpu, worker=worker)
    return len(gpus)
