"""Durable before visible: readers never see what a crash could take back; ENGRAM down is a fast 503.

Each test runs its own CORTEX actor (``PrivateCortex``: a second name beside the package's
``cortex``) on a ``GatedEngram``, whose journal writes the test holds or fails by files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from cortex_support import PrivateCortex, wait_until

from mnemos.errors import NotFoundError, UnavailableError

T = "mnemos.cortex.testing"


@pytest.fixture()
def gated(ray_cluster: None, cortex_settings: Any, tmp_path: Path) -> Iterator[PrivateCortex]:
    cortex = PrivateCortex(tmp_path, cortex_settings, journal_timeout=3.0)
    yield cortex
    cortex.close()


def test_a_result_is_hidden_until_durable_and_a_crash_before_that_loses_nothing_shown(gated: PrivateCortex) -> None:
    gated.set("block", "result")
    [job_id] = gated.submit("held-1", "add", 20, 22)
    wait_until(Path(f"{gated.gate}.held").exists, what="the result write to be held")
    # The result is applied in CORTEX's memory and not durable: no reader may see it.
    for _ in range(5):
        assert gated.call("get", job_id)["status"] == "running"
    assert gated.call("wait", job_id, 0.3)["status"] == "running"
    assert "result" not in gated.call("get", job_id)
    assert not any(j["status"] == "succeeded" for j in gated.call("list"))
    gated.crash()  # between apply and durable write
    gated.lift("block")
    done = gated.call("wait", job_id, 120)
    assert done["status"] == "succeeded" and done["result"]["value"] == 42
    assert done["attempts"] == 2  # the result shown is the one a durable record holds: a rerun's
    assert gated.records(job_id)["result"] == 1


def test_a_cancel_is_shown_once_durable(gated: PrivateCortex, tmp_path: Path) -> None:
    [job_id] = gated.submit("cancel-1", "wait_for_file", str(tmp_path / "never"), 120)
    wait_until(Path(f"{tmp_path / 'never'}.started").exists, what="the job to start")
    gated.set("block", "cancel")
    pending = gated.actor.cancel.remote(job_id, "tester")
    wait_until(Path(f"{gated.gate}.held").exists, what="the cancel write to be held")
    assert gated.call("get", job_id)["status"] == "running"
    assert ray.wait([pending], timeout=0.5)[0] == []  # the cancel has not answered
    gated.lift("block")
    assert ray.get(pending, timeout=60)["status"] == "cancelled"
    assert gated.call("get", job_id)["status"] == "cancelled"


def test_a_duplicate_submit_answers_only_once_the_first_is_durable(gated: PrivateCortex) -> None:
    gated.set("block", "submit")
    spec = [{"id": "dup-1", "function": f"{T}:add", "args": [1, 1]}]
    first = gated.actor.submit_many.remote(spec)
    wait_until(Path(f"{gated.gate}.held").exists, what="the submit write to be held")
    second = gated.actor.submit_many.remote(spec)
    ready, _ = ray.wait([first, second], num_returns=2, timeout=1.0)
    assert ready == []  # neither answers before the record is durable
    with pytest.raises(NotFoundError):
        gated.call("get", "dup-1")  # not accepted yet: not visible
    gated.lift("block")
    assert ray.get([first, second], timeout=60) == [["dup-1"], ["dup-1"]]
    assert gated.call("wait", "dup-1", 120)["status"] == "succeeded"
    assert gated.records("dup-1")["submit"] == 1


def test_engram_down_fails_submits_fast_with_nothing_half_accepted(gated: PrivateCortex) -> None:
    gated.set("fail", "*")
    with pytest.raises(UnavailableError, match="could not be written within 3s"):
        gated.submit("down-1")
    with pytest.raises(UnavailableError, match="cannot be written now"):
        gated.submit("down-2")  # the journal is failing: refused at once
    assert gated.call("stats")["journal"]["failing"] is True
    for job_id in ("down-1", "down-2"):
        with pytest.raises(NotFoundError):
            gated.call("get", job_id)
    gated.lift("fail")
    wait_until(lambda: not gated.call("stats")["journal"]["failing"], what="the journal to recover")
    assert gated.submit("down-1") == ["down-1"]  # the same id, submitted again
    assert gated.call("wait", "down-1", 120)["status"] == "succeeded"
    # The ambiguous first write landed after all; its withdraw record keeps it from counting twice.
    gated.crash()
    assert gated.call("get", "down-1")["status"] == "succeeded"
    assert [j["id"] for j in gated.call("list")] == ["down-1"]
    counts = gated.records("down-1")
    assert counts["withdraw"] == 1 and counts["result"] == 1
    with pytest.raises(NotFoundError):
        gated.call("get", "down-2")
