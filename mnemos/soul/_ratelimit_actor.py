"""The named ``ratelimit`` actor: the state every gateway replica shares.

- token buckets per limit key (requests or tokens per second), handed out in leases (``take``); a
  bucket goes below zero when a replica charges tokens its requests used beyond their reservations,
  and the refill repays that debt while the key is idle;
- budgets: spend and tokens per scope (``key:<id>``, ``team:<name>``) and window, with the
  reservations in flight (``reserve`` before a request, ``report`` settles it after);
- the usage ledger: requests, tokens and spend per hour, principal, team and model (``usage``).

With an ENGRAM root the ledger and the budget counters are saved under ``usage/state.json`` (a few
seconds after a change) and read back when the actor restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import ray

from mnemos._actors import RATELIMIT
from mnemos.soul.bucket import TokenBucket

ACTOR_NAME = RATELIMIT
_IDLE_SWEEP_EVERY = 4096
_HOUR = 3600.0
_RESERVATION_TTL_S = 900.0
_SAVE_EVERY_S = 5.0
STATE_KEY = "usage/state.json"

log = logging.getLogger(__name__)

# A budget check: (scope, amount limit or None, token limit or None, window seconds).
BudgetCheck = tuple[str, float | None, int | None, float]


def window_start(now: float, window: float) -> float:
    """Start of the fixed window holding ``now`` (windows are multiples of ``window`` since the epoch)."""
    return (now // window) * window


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)  # type: ignore[call-overload]
class RateLimitService:
    """Async actor holding buckets, budgets and the usage ledger (see the module docstring).

    Args:
        engram: where the ledger is saved (``None``: memory only).
        clock: the buckets' clock (tests pass a fake one).
    """

    def __init__(self, engram: Any = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._calls = 0
        self._engram = engram
        # (scope, window start) -> [spend, tokens]
        self._spent: dict[tuple[str, float], list[float]] = {}
        # (scope, window start) -> window end: a window that ended is forgotten when saved (``_forget_ended``)
        self._ends: dict[tuple[str, float], float] = {}
        # reservation id -> (expires, [(scope, window start)], amount, tokens)
        self._reservations: dict[str, tuple[float, list[tuple[str, float]], float, int]] = {}
        # (scope, window start) -> [amount reserved, tokens reserved]
        self._reserved: dict[tuple[str, float], list[float]] = {}
        # (hour, principal, team, model) -> [requests, prompt, completion, spend, cached]
        self._ledger: dict[tuple[float, str, str, str], list[float]] = {}
        self._dirty = False
        self._saver: asyncio.Task[None] | None = None
        if engram is not None:
            self._load()

    # -- rate limits -----------------------------------------------------------------------------
    async def take(self, key: str, n: int, rate: float, burst: int, returned: int = 0,
                   need: int = 1) -> tuple[int, float]:  # fmt: skip
        """Settle ``returned`` tokens with ``key``'s bucket (created full at ``burst``), then take up
        to ``n`` of them, but only if at least ``need`` are there (else none).

        ``returned > 0``: tokens a replica leased but did not use (its lease expired, or a request
        used fewer than it reserved) go back, up to ``burst``. ``returned < 0``: tokens its requests
        used beyond their reservations are charged; the bucket may go below zero, and its refill
        repays that debt before it grants again.

        Returns ``(granted, balance)``: ``balance`` is what the bucket holds after the take (negative
        while it repays a debt); a replica that got less than it asked for computes from it, and
        ``rate``, when the tokens a request needs will be there.
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, burst, clock=self._clock)
        else:
            bucket.configure(rate, burst)
        if returned > 0:
            bucket.give(returned)
        elif returned < 0:
            bucket.charge(-returned)
        granted = bucket.take_up_to(n, need) if n > 0 else 0
        self._calls += 1
        if self._calls % _IDLE_SWEEP_EVERY == 0:
            self._sweep()
        return granted, bucket.tokens

    async def reset(self, key: str | None = None) -> None:
        """Forget one bucket (or all): it starts full again."""
        if key is None:
            self._buckets.clear()
        else:
            self._buckets.pop(key, None)

    async def size(self) -> int:
        return len(self._buckets)

    def _sweep(self) -> None:
        """Drop buckets that have refilled completely: they are indistinguishable from new ones."""
        now = self._clock()
        for key in [k for k, b in self._buckets.items() if b.is_full(now)]:
            del self._buckets[key]
        self._forget_ended(time.time())

    # -- budgets ---------------------------------------------------------------------------------
    async def reserve(self, rid: str, checks: list[BudgetCheck], amount: float, tokens: int) -> dict[str, Any] | None:
        """Reserve ``amount`` and ``tokens`` on every budget of ``checks``, or none of them.

        Returns ``None`` when reserved, else the refusal: ``{scope, unit, limit, used, retry_after}``
        (``used`` counts spend settled plus reservations in flight).
        """
        now = time.time()
        self._expire(now)
        slots = []
        for scope, limit_amount, limit_tokens, window in checks:
            slot = (scope, window_start(now, window))
            spent = self._spent.get(slot, [0.0, 0.0])
            held = self._reserved.get(slot, [0.0, 0.0])
            for unit, limit, used, need in (("amount", limit_amount, spent[0] + held[0], amount),
                                            ("tokens", limit_tokens, spent[1] + held[1], tokens)):  # fmt: skip
                if limit is not None and used + need > limit:
                    return {"scope": scope, "unit": unit, "limit": limit, "used": used,
                            "retry_after": slot[1] + window - now}  # fmt: skip
            slots.append(slot)
            self._ends[slot] = slot[1] + window
        for slot in slots:
            held = self._reserved.setdefault(slot, [0.0, 0.0])
            held[0] += amount
            held[1] += tokens
        self._reservations[rid] = (now + _RESERVATION_TTL_S, slots, amount, tokens)
        return None

    def _release(self, rid: str) -> list[tuple[str, float]]:
        found = self._reservations.pop(rid, None)
        if found is None:
            return []
        _, slots, amount, tokens = found
        for slot in slots:
            held = self._reserved.get(slot)
            if held is not None:
                held[0] -= amount
                held[1] -= tokens
                if held[0] <= 1e-12 and held[1] <= 0:
                    del self._reserved[slot]
        return slots

    def _expire(self, now: float) -> None:
        """Drop reservations of requests whose replica never settled them (it died)."""
        for rid in [r for r, (expires, *_) in self._reservations.items() if expires < now]:
            self._release(rid)

    # -- settling and the ledger -----------------------------------------------------------------
    async def report(self, rows: list[dict[str, Any]]) -> int:
        """Settle requests: each row ``{rid?, at, principal, team, model, prompt, completion, spend,
        cached?, scopes?: [[scope, window], …], requests?}`` releases its reservation, charges its
        budgets and goes into the ledger. A row without ``rid`` may sum ``requests`` requests of one
        hour and budget windows (``cached``: how many of them were cache hits). Returns how many rows
        were taken."""
        for row in rows:
            slots = self._release(row["rid"]) if row.get("rid") else []
            if not slots:
                slots = [(scope, window_start(row["at"], window)) for scope, window in row.get("scopes") or ()]
                for (_, window), slot in zip(row.get("scopes") or (), slots, strict=True):
                    self._ends[slot] = slot[1] + float(window)
            tokens = int(row.get("prompt", 0)) + int(row.get("completion", 0))
            for slot in slots:
                spent = self._spent.setdefault(slot, [0.0, 0.0])
                spent[0] += float(row.get("spend", 0.0))
                spent[1] += tokens
            hour = window_start(row["at"], _HOUR)
            entry = self._ledger.setdefault(
                (hour, str(row.get("principal", "")), str(row.get("team", "")), str(row.get("model", ""))),
                [0, 0, 0, 0.0, 0],
            )
            entry[0] += int(row.get("requests", 1))
            entry[1] += int(row.get("prompt", 0))
            entry[2] += int(row.get("completion", 0))
            entry[3] += float(row.get("spend", 0.0))
            entry[4] += int(row.get("cached") or 0)
        if rows:
            self._mark_dirty()
        return len(rows)

    async def usage(self, since: float = 0.0, until: float | None = None) -> list[dict[str, Any]]:
        """Ledger rows (one per hour, principal, team and model) overlapping ``[since, until)``."""
        until = time.time() + _HOUR if until is None else until
        return [
            {"hour": hour, "principal": principal, "team": team, "model": model, "requests": int(v[0]),
             "prompt_tokens": int(v[1]), "completion_tokens": int(v[2]), "spend": v[3], "cached": int(v[4])}
            for (hour, principal, team, model), v in self._ledger.items()
            if hour + _HOUR > since and hour < until
        ]  # fmt: skip

    async def budget(self, scope: str, window: float) -> dict[str, float]:
        """``{spend, tokens, reserved_amount, reserved_tokens, window_start}`` of one scope now."""
        slot = (scope, window_start(time.time(), window))
        spent = self._spent.get(slot, [0.0, 0.0])
        held = self._reserved.get(slot, [0.0, 0.0])
        return {"spend": spent[0], "tokens": spent[1], "reserved_amount": held[0], "reserved_tokens": held[1],
                "window_start": slot[1]}  # fmt: skip

    # -- persistence -----------------------------------------------------------------------------
    def _mark_dirty(self) -> None:
        self._dirty = True
        if self._engram is not None and (self._saver is None or self._saver.done()):
            self._saver = asyncio.ensure_future(self._save_later())

    async def _save_later(self) -> None:
        await asyncio.sleep(_SAVE_EVERY_S)
        await self.save()

    async def save(self) -> bool:
        """Write the ledger and budget counters to ENGRAM now (when they changed)."""
        if self._engram is None or not self._dirty:
            return False
        self._dirty = False
        self._forget_ended(time.time())
        state = {
            "spent": [[scope, start, v[0], v[1], self._ends.get((scope, start))]
                      for (scope, start), v in self._spent.items()],  # fmt: skip
            "ledger": [[*key, *v] for key, v in self._ledger.items()],
        }
        try:
            await asyncio.to_thread(self._engram.write_json, STATE_KEY, state)
        except Exception:  # noqa: BLE001 - ENGRAM down: keep counting, try again later
            log.warning("ratelimit: saving usage failed", exc_info=True)
            self._dirty = True
        return True

    def _forget_ended(self, now: float) -> None:
        """Drop the counters of budget windows that ended: no request reads them again, and kept,
        a short window (``1m``) added one entry a minute to every save, for as long as it ran."""
        for slot in [slot for slot, end in self._ends.items() if end <= now and slot not in self._reserved]:
            self._spent.pop(slot, None)
            del self._ends[slot]

    def _load(self) -> None:
        try:
            state = self._engram.read_json(STATE_KEY)
        except Exception:  # noqa: BLE001 - nothing saved yet
            return
        for scope, start, amount, tokens, *end in state.get("spent", []):  # (saved before ends were: no end)
            self._spent[(scope, float(start))] = [float(amount), float(tokens)]
            if end and end[0] is not None:
                self._ends[(scope, float(start))] = float(end[0])
        self._ledger = {(float(r[0]), r[1], r[2], r[3]): list(r[4:9]) for r in state.get("ledger", [])}
