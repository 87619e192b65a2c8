"""A replica's batch of usage reaches the ``ratelimit`` actor summed per caller and model.

The actor settled every request of a batch one by one (its ledger row, its budget windows), on the
same cores the requests needed: at a few hundred requests a second that was ~50 µs of its CPU a
request. A batch now carries one row per hour, caller, model and budget windows, with ``requests``
and ``cached`` counts; a request that reserved a budget keeps its own row (its reservation is
released by id). The ledger and the budgets read the same sums either way.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from mnemos.soul._ratelimit_actor import RateLimitService, window_start
from mnemos.soul.limits import Governor, Ticket

WINDOW = 60.0


class RecordingActor:
    """The ``ratelimit`` actor's own class in this process; ``reports`` keeps each batch it was sent."""

    def __init__(self) -> None:
        self.service = RateLimitService.__ray_actor_class__()
        self.reports: list[list[dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.service, name)

        def remote(*args: Any) -> Any:
            if name == "report":
                self.reports.append([dict(row) for row in args[0]])
            return method(*args)

        return SimpleNamespace(remote=remote)


def _ticket(i: int, principal: str, model: str, *, scoped: bool = False) -> Ticket:
    pricing = SimpleNamespace(input=1.0, output=2.0, cost=lambda p, c: p * 0.001 + c * 0.002)
    ticket = Ticket(rid=f"r{i}", principal=principal, team="blue", model=model, reserved_tokens=100, pricing=pricing)
    if scoped:
        ticket.budget_scopes = [(f"key:{principal}", WINDOW)]
    return ticket


def test_a_batch_is_one_row_per_caller_and_model_and_the_sums_are_kept() -> None:
    async def main() -> None:
        actor = RecordingActor()
        governor = Governor(actor=actor, flush_s=3600)  # flushed by hand below
        expected: dict[tuple[str, str], list[float]] = {}
        for i in range(60):
            principal, model = ("ann", "bob")[i % 2], ("m1", "m2")[i % 3 == 0]
            cached = i % 7 == 0
            spend = governor.settle(_ticket(i, principal, model, scoped=True), 10 + i, i, cached=cached)
            sums = expected.setdefault((principal, model), [0, 0, 0, 0.0, 0])
            for k, v in enumerate((1, 10 + i, i, spend, int(cached))):
                sums[k] += v
        reserved = _ticket(99, "ann", "m1")
        reserved.budget_reserved = True
        governor.settle(reserved, 5, 6)
        assert await governor.flush() == 5
        (batch,) = actor.reports
        assert [row["rid"] for row in batch if row.get("rid")] == ["r99"]  # its reservation, by id
        assert len([row for row in batch if not row.get("rid")]) == 4  # 60 requests: 2 callers x 2 models
        reserved_row = (1, 5, 6, 0.005 + 0.012, 0)
        expected[("ann", "m1")] = [a + b for a, b in zip(expected[("ann", "m1")], reserved_row, strict=True)]
        ledger = {(r["principal"], r["model"]): [r["requests"], r["prompt_tokens"], r["completion_tokens"],
                                                 r["spend"], r["cached"]]
                  for r in await actor.service.usage()}  # fmt: skip
        assert ledger.keys() == expected.keys()
        for who, sums in expected.items():
            assert ledger[who][:3] == sums[:3] and ledger[who][4] == sums[4], (who, ledger[who], sums)
            assert abs(ledger[who][3] - sums[3]) < 1e-9
        for principal in ("ann", "bob"):  # the budget windows are charged the same sums
            spent = await actor.service.budget(f"key:{principal}", WINDOW)
            tokens = sum(s[1] + s[2] for (p, _), s in expected.items() if p == principal)
            assert spent["tokens"] == tokens - (11 if principal == "ann" else 0)  # r99 charged no scope

    asyncio.run(main())


def test_rows_of_other_hours_and_budget_windows_stay_apart() -> None:
    async def main() -> None:
        actor = RecordingActor()
        governor = Governor(actor=actor, flush_s=3600)
        now = time.time()
        start = window_start(now, WINDOW)
        governor._pending = [  # settled just before and just after a budget window began
            {"at": start - 0.5, "principal": "ann", "team": "", "model": "m", "prompt": 1, "completion": 1,
             "spend": 0.0, "cached": False, "scopes": [["key:ann", WINDOW]]},
            {"at": start + 0.5, "principal": "ann", "team": "", "model": "m", "prompt": 2, "completion": 2,
             "spend": 0.0, "cached": False, "scopes": [["key:ann", WINDOW]]},
            {"at": start + 0.6, "principal": "ann", "team": "", "model": "m", "prompt": 3, "completion": 3,
             "spend": 0.0, "cached": False, "scopes": [["key:ann", 3600.0]]},
        ]  # fmt: skip
        assert await governor.flush() == 3
        assert (await actor.service.budget("key:ann", WINDOW))["tokens"] == 4  # not the earlier window's 2

    asyncio.run(main())


def test_a_batch_the_actor_did_not_take_is_sent_again_with_its_counts() -> None:
    async def main() -> None:
        actor = RecordingActor()
        failing = SimpleNamespace(report=SimpleNamespace(remote=lambda rows: (_ for _ in ()).throw(OSError("down"))))
        governor = Governor(actor=failing, flush_s=3600)
        for i in range(5):
            governor.settle(_ticket(i, "ann", "m"), 1, 1)
        assert await governor.flush() == 0  # kept for the next flush
        governor._actor = actor
        governor.settle(_ticket(9, "ann", "m"), 1, 1)
        assert await governor.flush() == 1
        (row,) = await actor.service.usage()
        assert row["requests"] == 6 and row["prompt_tokens"] == 6

    asyncio.run(main())
