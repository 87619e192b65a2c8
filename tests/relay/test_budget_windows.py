"""The ``ratelimit`` actor forgets the counters of budget windows that ended.

It kept every (scope, window) it ever counted and wrote all of them to ``usage/state.json`` on each
save (every few seconds): a key with ``budget: {tokens: 1000, window: 1m}`` added an entry a minute,
for as long as it was used. A window that ended is read by no request again; the current one is
kept (and one whose reservations are still in flight). State saved before ends were recorded
still loads.

The actor's own class in this process, over a local ENGRAM (no Ray).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from mnemos.soul._ratelimit_actor import STATE_KEY, RateLimitService, window_start

WINDOW = 86400.0


def _row(at: float, scope: str) -> dict[str, Any]:
    return {"at": at, "principal": "p", "team": "", "model": "m", "prompt": 3, "completion": 4, "spend": 0.5,
            "scopes": [[scope, WINDOW]]}  # fmt: skip


def test_ended_windows_are_forgotten_and_the_current_one_kept(tmp_path: Path) -> None:
    from mnemos.engram import Engram

    engram = Engram(str(tmp_path / "engram"))
    service = RateLimitService.__ray_actor_class__(engram)
    now = time.time()

    async def run() -> None:
        await service.report([_row(now - (i + 1) * WINDOW, "key:a") for i in range(50)])  # 50 ended windows
        await service.report([_row(now, "key:a")])
        await service.save()

    asyncio.run(run())
    saved = engram.read_json(STATE_KEY)["spent"]
    assert len(saved) == 1 and saved[0][:4] == ["key:a", window_start(now, WINDOW), 0.5, 7], saved[:3]
    state = asyncio.run(service.budget("key:a", WINDOW))
    assert (state["spend"], state["tokens"]) == (0.5, 7)


def test_state_saved_before_window_ends_were_recorded_loads(tmp_path: Path) -> None:
    from mnemos.engram import Engram

    engram = Engram(str(tmp_path / "engram"))
    start = window_start(time.time(), WINDOW)
    engram.write_json(STATE_KEY, {"spent": [["key:a", start, 1.5, 20]], "ledger": []})
    service = RateLimitService.__ray_actor_class__(engram)
    state = asyncio.run(service.budget("key:a", WINDOW))
    assert (state["spend"], state["tokens"]) == (1.5, 20)
