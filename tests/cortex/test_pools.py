"""NEURON pool placement without starting workers: affinity, fit rules, selectors, least-busy choice."""

from __future__ import annotations

from mnemos.config import PoolConfig
from mnemos.engram import Engram
from mnemos.neuron.pools import Pool, PoolSet, WorkerSlot, unfit_reason

CPU = PoolConfig(name="cpu-a", selector={"accelerator": "cpu"}, size=2, num_cpus=1)
GPU = PoolConfig(name="gpu-a", selector={"accelerator": "nvidia"}, size=1, num_cpus=0, num_gpus=1)


def _pools(local_engram: Engram, gpu_preferred: bool) -> PoolSet:
    pools = PoolSet([CPU, GPU], local_engram, 1024, gpu_preferred=gpu_preferred)
    for pool in pools.pools.values():  # workers as the pool would hold them (handles unused here)
        pool.workers = [WorkerSlot(f"{pool.name}-{i}", pool.name, None, capacity=2) for i in range(pool.config.size)]
    return pools


def test_jobs_that_can_use_either_go_to_gpu_pools_first_when_preferred(local_engram: Engram) -> None:
    preferred = _pools(local_engram, gpu_preferred=True)
    assert [p.name for p in preferred.candidates({})] == ["gpu-a", "cpu-a"]
    assert [p.name for p in preferred.candidates({"gpus": 0})] == ["gpu-a", "cpu-a"]
    assert [p.name for p in preferred.candidates({"gpus": 1})] == ["gpu-a"]
    assert [p.name for p in preferred.candidates({"cpus": 0.5})] == ["cpu-a"]  # gpu-a workers have no CPU
    assert [p.name for p in _pools(local_engram, gpu_preferred=False).candidates({})] == ["cpu-a", "gpu-a"]


def test_acquire_spills_over_and_picks_the_least_busy(local_engram: Engram) -> None:
    pools = _pools(local_engram, gpu_preferred=True)
    order = pools.candidates({})
    taken = [pools.acquire(order) for _ in range(6)]
    assert [s.name if s else None for s in taken] == ["gpu-a-0", "gpu-a-0", "cpu-a-0", "cpu-a-1", "cpu-a-0", "cpu-a-1"]
    assert pools.acquire(order) is None  # every slot is busy
    pools.release(taken[3])
    assert pools.acquire(order) is taken[3]


def test_fit_rules_name_what_does_not_fit() -> None:
    assert unfit_reason(CPU, {}) is None
    assert unfit_reason(CPU, {"gpus": 1}) == "resources.gpus"
    assert unfit_reason(GPU, {"cpus": 1}) == "resources.cpus"
    assert unfit_reason(CPU, {"pool": "gpu-a"}) == "resources.pool"
    assert unfit_reason(GPU, {"selector": {"accelerator": "cpu"}}) == "resources.selector"
    assert unfit_reason(GPU, {"selector": {"accelerator": "nvidia"}, "gpus": 1}) is None


def test_why_a_pool_has_no_workers() -> None:
    why = PoolSet._why_not
    assert why(GPU, 0, [{}]) == "the cluster has 0 GPUs and each worker of this pool needs 1"
    assert why(GPU, 2, [{}]) is None  # no node carries 'accelerator': the selector only describes the pool
    assert why(GPU, 2, [{"accelerator": "cpu"}]) == "no alive node carries the labels accelerator=nvidia"
    assert why(GPU, 2, [{"accelerator": "cpu"}, {"accelerator": "nvidia"}]) is None
    assert why(CPU.model_copy(update={"size": 0}), 0, [{}]) == "its size is 0"
    assert Pool(CPU).describe()["active"] is False
