"""A run (and each step) is shown ended only once its lineage records are written.

The run's state is read as it changes (``run.state()`` asks the runner, which hands out the live
state): a run that said ``succeeded`` while its lineage still said ``pending`` made
``tests/trace/test_lineage.py`` fail in CI. Here the lineage writer looks at the run's state at the
moment it writes each batch: whatever it writes about an end must not be visible yet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mnemos.synkron import _state
from mnemos.synkron._plan import prepare
from mnemos.synkron.runner import RunExecutor
from mnemos.trace.lineage import LineageWriter, events


class _Watching(LineageWriter):
    """A real lineage writer that, as it writes a batch, notes what the run's state shows of each
    run and step its batch ends (the slowest possible flush: everything else waits for it)."""

    def __init__(self, engram: Any) -> None:
        super().__init__(engram)
        self.executor: RunExecutor | None = None
        self.seen: list[tuple[str, str, str]] = []  # (node, status written, status shown meanwhile)

    def flush(self) -> int:
        assert self.executor is not None
        state = self.executor.state
        with self._lock:
            batch = list(self._buffer)
        with self.executor.lock:
            for ev in batch:
                status = (ev.get("attrs") or {}).get("status")
                if ev["id"] == f"run:{state['id']}" and ev["type"] == "result":
                    self.seen.append((ev["id"], status, state["status"]))
                elif ev["id"].startswith(f"step:{state['id']}/") and ev["type"] == "execution":
                    step = state["steps"][ev["id"].rsplit("/", 1)[1]]
                    self.seen.append((ev["id"], status, step["status"]))
        return super().flush()


def _drive(client: Any, path: Path, *, cancel: bool = False) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    state = prepare(client, str(path), cache=False)
    executor = RunExecutor(client, state)
    writer = _Watching(client.engram)
    writer.executor = executor
    executor._lineage = writer
    if cancel:
        executor.cancel()
    final = executor.run()
    return final, writer.seen


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled"])
def test_a_run_is_shown_ended_only_after_its_lineage_is_written(client, pipelines, tmp_path: Path,
                                                                outcome: str) -> None:  # fmt: skip
    m = str(pipelines.marker)
    flag = tmp_path / "fail"
    if outcome == "failed":
        flag.write_text("x")
    path = pipelines.write(
        [
            {"name": "make", "call": pipelines.call("produce"), "params": {"n": 2, "marker": m},
             "outputs": [{"name": "items"}]},
            {"name": "check", "call": pipelines.call("fail_if_exists"),
             "params": {"data": "${items}", "flag": str(flag), "marker": m}, "outputs": [{"name": "checked"}]},
        ]
    )  # fmt: skip
    state, seen = _drive(client, path, cancel=outcome == "cancelled")
    assert state["status"] == outcome, state.get("error")
    run_node = f"run:{state['id']}"
    assert [(status, shown) for node, status, shown in seen if node == run_node] == [(outcome, "running")]
    for node, status, shown in seen:  # a step's end is written while the step still shows running
        if node != run_node:
            assert status in _state.TERMINAL | _state.DONE and shown == "running", (node, status, shown)
    if outcome != "cancelled":
        assert {node.rsplit("/", 1)[1] for node, _, _ in seen if node != run_node} == {"make", "check"}
    written = [e for e in events(client.engram) if e["id"] == run_node and e["type"] == "result"]
    assert [e["attrs"]["status"] for e in written] == [outcome]
