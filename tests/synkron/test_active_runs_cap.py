"""``synkron.maxActiveRuns``: each run is a thread of the runner, shared by every caller, and a key
could start runs without end (only its request rate limited it). One caller may have that many going
at once; one more is a 429 naming the setting, other callers are not affected, and a run that ends
frees its place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mnemos.errors import RateLimitError
from mnemos.soul.identity import Principal

OLGA, OTTO = Principal("olga", "operator", "apikey"), Principal("otto", "operator", "apikey")


def test_a_caller_has_at_most_max_active_runs_going(client: Any, pipelines: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(client.settings.synkron, "max_active_runs", 2)
    gate = tmp_path / "gate"
    path = pipelines.write([{"name": "hold", "script": "while [ ! -e ${gate} ]; do sleep 0.2; done"}],
                           params={"gate": str(gate)})  # fmt: skip
    held = [client.pipelines.run(path, principal=OLGA, wait=False, progress=False) for _ in range(2)]
    try:
        with pytest.raises(RateLimitError) as refused:
            client.pipelines.run(path, principal=OLGA, wait=False, progress=False)
        assert refused.value.param == "synkron.maxActiveRuns" and refused.value.status == 429
        assert "2 runs of this caller are going" in refused.value.message
        other = client.pipelines.run(path, principal=OTTO, wait=False, progress=False)  # another caller's place
        with pytest.raises(RateLimitError):  # a resume starts a run too
            client.pipelines.resume(held[0].id, principal=OLGA, wait=False, progress=False)
    finally:
        gate.touch()
    for handle in [*held, other]:
        assert handle.wait(120, progress=False)["status"] == "succeeded"
    again = client.pipelines.run(path, principal=OLGA, wait=True, progress=False, timeout=120)
    assert again.state()["status"] == "succeeded"
