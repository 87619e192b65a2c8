"""Concurrent writers on one resource: every acknowledged change is a generation, none is lost.

Each writer has its own ``Registry`` and ``Engram`` (and, on S3, its own s3fs client), so they race
through the store itself (atomic create per generation), on a local folder and on loopback S3.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import pytest
from tests_support import model_doc

from mnemos.engram import Engram
from mnemos.errors import ConflictError, NotFoundError
from mnemos.genome import Registry, parse_resource

NAME = "contended"


def _version(writer: int, seq: int) -> Any:
    doc = model_doc(NAME)
    doc["metadata"]["annotations"] = {"writer": str(writer), "seq": str(seq)}
    return parse_resource(doc)


def _own_registry(engram: Engram) -> Registry:
    """A registry over a store object of its own (no shared lock, no shared S3 client)."""
    options = dict(engram.storage_options)
    if not engram.is_local:
        options["skip_instance_cache"] = True
    return Registry(Engram(engram.uri, options))


def _race(writers: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` on ``writers`` threads released together; their results in writer order."""
    start = threading.Barrier(writers)
    results: list[Any] = [None] * writers

    def run(i: int) -> None:
        start.wait(timeout=60)
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - returned to the test, which checks it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    return results


def _assert_none_lost(registry: Registry, acknowledged: list[tuple[str, str]]) -> None:
    history = registry.history("Model", NAME)
    assert [r.generation for r in history] == list(range(1, len(history) + 1))
    stored = [(r.metadata.annotations["writer"], r.metadata.annotations["seq"]) for r in history]
    assert sorted(stored) == sorted(acknowledged), "an acknowledged change is missing from the history"
    assert len(stored) == len(set(stored))


@pytest.mark.parametrize("writers", [2, 8])
def test_concurrent_writers_lose_no_change(engram: Engram, writers: int) -> None:
    # Fewer rounds on S3: every attempt there is a handful of requests to the loopback server.
    per_writer = (10 if engram.is_local else 5) if writers == 2 else (4 if engram.is_local else 2)

    def work(i: int) -> list[tuple[str, str, int]]:
        registry = _own_registry(engram)
        done = []
        for seq in range(per_writer):
            result = registry.apply(_version(i, seq))
            assert result.action in ("created", "configured")
            done.append((str(i), str(seq), int(result.resource.generation)))
        return done

    results = _race(writers, work)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    acked = [item for per in results for item in per]
    assert len(acked) == writers * per_writer
    assert len({gen for _, _, gen in acked}) == len(acked), "two writers were told they made the same generation"
    _assert_none_lost(Registry(engram), [(w, s) for w, s, _ in acked])


def test_same_precondition_one_winner(engram: Engram) -> None:
    base = Registry(engram).apply(_version(99, 0)).resource.generation
    results = _race(8, lambda i: _own_registry(engram).apply(_version(i, 1), expected_generation=base))
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, ConflictError)]
    assert len(won) == 1 and len(lost) == 7, results
    assert won[0].resource.generation == base + 1
    assert all(f"generation {base + 1}" in e.message and e.status == 409 for e in lost)
    assert all(e.param == "metadata.generation" for e in lost)


def test_stale_preconditions_conflict(local_engram: Engram) -> None:
    reg = Registry(local_engram)
    with pytest.raises(ConflictError, match="absent"):
        reg.apply(_version(0, 0), expected_generation=3)
    assert reg.apply(_version(0, 0), expected_generation=0).action == "created"
    with pytest.raises(ConflictError):  # 0 means "must not exist"
        reg.apply(_version(0, 1), expected_generation=0)
    assert reg.apply(_version(0, 1), expected_generation=1).resource.generation == 2
    with pytest.raises(ConflictError, match="generation 2, not generation 1"):
        reg.apply(_version(0, 2), expected_generation=1)
    # an unchanged apply with a stale precondition is a conflict too
    with pytest.raises(ConflictError):
        reg.apply(_version(0, 1), expected_generation=1)
    with pytest.raises(ConflictError):
        reg.delete("Model", NAME, expected_generation=1)
    assert reg.get("Model", NAME).generation == 2
    assert reg.delete("Model", NAME, expected_generation=2).generation == 2
    with pytest.raises(NotFoundError):
        reg.delete("Model", NAME)
    again = reg.apply(_version(0, 3), expected_generation=0)
    assert (again.action, again.resource.generation) == ("created", 3)


def test_concurrent_deletes_one_acknowledged(local_engram: Engram) -> None:
    Registry(local_engram).apply(_version(0, 0))
    results = _race(4, lambda i: _own_registry(local_engram).delete("Model", NAME))
    assert sum(not isinstance(r, BaseException) for r in results) == 1, results
    assert all(isinstance(r, NotFoundError) for r in results if isinstance(r, BaseException))


def _process_writer(uri: str, writer: int, count: int, out: Any) -> None:
    registry = Registry(Engram(uri))
    results = [registry.apply(_version(writer, seq)) for seq in range(count)]
    acked = [(str(writer), str(seq)) for seq, r in enumerate(results) if r.action != "unchanged"]
    out.put(acked)


def test_two_processes_lose_no_change(tmp_path: Any) -> None:
    """The measurement of NOTES.md (two processes, 30 changed versions each) as a test."""
    uri = str(tmp_path / "engram")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_process_writer, args=(uri, i, 30, out)) for i in range(2)]
    for p in procs:
        p.start()
    acked = [item for _ in procs for item in out.get(timeout=240)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(acked) == 60
    _assert_none_lost(Registry(Engram(uri)), acked)
