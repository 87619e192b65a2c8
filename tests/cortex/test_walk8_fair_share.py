"""Walk 8 of fair share: what a developer could do to the order, and what a restart must keep.

The scenarios run on real CORTEX actors, one crashed mid-way and its twin not, with the helpers of
``test_fair_share_durable`` (start orders read back from the journal)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_fair_share_durable import _held, _release, _run, _sub


def test_a_restart_keeps_the_virtual_time_of_a_level_emptied_before_its_last_started_job_left_memory(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    """carol's hold set the level's virtual time, finished, and left memory with a checkpoint while nothing
    of its level waited (an urgent job holds the only slot). alice and bob queue next, in the next round.
    Before, the restart found no job of that level that had run, started its virtual time over from 0,
    and dave, who submitted after the restart, was dealt a turn ahead of every job already waiting."""

    def evicted_then_queued(cortex: Any, gates: Path) -> None:
        _held(cortex, gates, "hold", "carol")
        cortex.call("submit_many", [_sub("urgent", priority=5, gate=gates / "urgent")], "eve")
        _release("hold", "urgent")(cortex, gates)
        assert cortex.call("wait", "hold", 60)["status"] == "succeeded"
        cortex.call("checkpoint")  # retention 0: hold leaves memory, its level has nothing waiting
        cortex.call("submit_many", [_sub("a1"), _sub("a2")], "alice")
        cortex.call("submit_many", [_sub("b1")], "bob")

    def dave(cortex: Any, gates: Path) -> None:
        cortex.call("submit_many", [_sub("d1")], "dave")

    before, after = [evicted_then_queued], [dave, _release("urgent")]
    live = _run(tmp_path / "twin", cortex_settings, before, after, crash=False, retention=0)
    restarted = _run(tmp_path / "crashed", cortex_settings, before, after, crash=True, retention=0)
    assert live == ["hold", "urgent", "a1", "b1", "d1", "a2"]
    assert restarted == live  # before: ["hold", "urgent", "d1", "a1", "b1", "a2"]
