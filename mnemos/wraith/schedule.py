"""When WRAITH tasks are due: cron schedules (UTC, croniter) and intervals, with missed runs run once.

The state of each entry is ``lastSlot``: the latest scheduled time already handled. An entry is
due when its next slot after ``lastSlot`` has passed; it then runs once, and ``lastSlot`` jumps to
the latest slot at or before now, so a scheduler that was down for a day runs a ``*/15`` task
once on restart, not 96 times. An entry seen for the first time starts counting from now.

An entry that cannot be planned (a schedule croniter refuses, or one that never fires) keeps its
``error`` in the state and does not stop the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from croniter import croniter

from mnemos.engram import Engram
from mnemos.errors import MnemosError, ValidationError

__all__ = ["STATE", "ScheduleEntry", "entries_from_settings", "plan", "read_state"]

STATE = "wraith/state.json"

ON_TIME = 60.0  # a run this late is still "schedule", later it is "missed"


@dataclass(frozen=True)
class ScheduleEntry:
    """A task on a cron ``schedule`` or every ``interval`` seconds."""

    name: str
    schedule: str | None = None
    interval: float | None = None
    enabled: bool = True
    error: str | None = None  # why it cannot be planned (a broken entry: never run)

    def __post_init__(self) -> None:
        if self.error is not None:
            return
        if (self.schedule is None) == (self.interval is None):
            raise ValidationError(f"WRAITH entry {self.name!r} needs a schedule or an interval", param="schedule")
        if self.schedule is not None and not croniter.is_valid(self.schedule):
            raise ValidationError(
                f"WRAITH entry {self.name!r}: {self.schedule!r} is not a cron schedule (e.g. '0 3 * * *')",
                param=f"wraith.cronjobs.{self.name}.schedule",
            )
        if self.interval is not None and self.interval <= 0:
            raise ValidationError(f"WRAITH entry {self.name!r}: interval must be positive", param="interval")

    def next_after(self, t: float) -> float:
        """The first slot strictly after ``t``."""
        if self.interval is not None:
            return t + self.interval
        return float(croniter(self.schedule, t).get_next(float))

    def latest_at(self, t: float) -> float:
        """The latest slot at or before ``t`` (``t`` itself for an interval)."""
        if self.interval is not None:
            return t
        prev = float(croniter(self.schedule, t).get_prev(float))
        nxt = self.next_after(prev)
        return nxt if nxt <= t else prev

    @property
    def every(self) -> str:
        return self.schedule if self.schedule is not None else f"every {self.interval:g}s"


def read_state(engram: Engram) -> dict[str, dict[str, Any]]:
    """``{task: {lastSlot, nextRun, lastRun, lastJob, lastStatus, lastReason, error}}`` as last stored."""
    return engram.read_json(STATE) if engram.exists(STATE) else {}


def entries_from_settings(settings: Any) -> list[ScheduleEntry]:
    """The cron jobs of ``settings.wraith.cronjobs``, ``backup`` on ``engram.backups.schedule`` (unless
    declared there), and ``gitops-sync`` when a repo is configured."""
    out = [_entry(c.name, c.schedule, c.enabled) for c in settings.wraith.cronjobs]
    if not any(e.name == "backup" for e in out):  # the seed's engram.backups.schedule
        out.append(_entry("backup", settings.engram.backups.schedule, True))
    gitops = settings.wraith.gitops
    if gitops.repo and not any(e.name == "gitops-sync" for e in out):
        out.append(ScheduleEntry("gitops-sync", interval=float(gitops.interval)))
    return out


def _entry(name: str, schedule: str, enabled: bool) -> ScheduleEntry:
    """A cron entry, or a broken one carrying the reason (settings validate schedules; this is the
    last guard, so that one bad entry never stops the others)."""
    try:
        return ScheduleEntry(name, schedule=schedule, enabled=enabled)
    except MnemosError as exc:
        return ScheduleEntry(name, schedule=schedule, enabled=enabled, error=exc.message)


def _reason(exc: Exception) -> str:
    return exc.message if isinstance(exc, MnemosError) else f"{type(exc).__name__}: {exc}"


def plan(
    entries: list[ScheduleEntry], state: dict[str, dict[str, Any]], now: float
) -> tuple[list[tuple[str, str]], dict[str, dict[str, Any]], float | None]:
    """Decide what runs now.

    Args:
        entries: the schedule.
        state: ``{name: {"lastSlot": t, ...}}`` as stored (not modified).
        now: the current time.

    Returns:
        ``(due, new_state, wake_at)``: the ``(name, reason)`` pairs to run now (reason ``schedule``
        or ``missed``), the state to store (``lastSlot`` and ``nextRun`` updated) and the time of
        the next due slot (``None`` when nothing is enabled).
    """
    new_state = {name: dict(value) for name, value in state.items()}
    due: list[tuple[str, str]] = []
    wake_at: float | None = None
    for entry in entries:
        current = new_state.setdefault(entry.name, {})
        current.pop("error", None)
        if not entry.enabled:
            current["nextRun"] = None
            continue
        try:
            if entry.error is not None:
                raise ValidationError(entry.error, param="schedule")
            last_slot = current.get("lastSlot")
            start = now if last_slot is None else float(last_slot)  # first sight: count from now
            slot = entry.next_after(start)
            run = last_slot is not None and slot <= now
            last = entry.latest_at(now) if run else start
            next_run = entry.next_after(last)
        except Exception as exc:  # noqa: BLE001 - this entry is broken; the others still run
            current["error"] = f"cannot plan {entry.name}: {_reason(exc)}"
            current["nextRun"] = None
            continue
        if run:
            due.append((entry.name, "schedule" if now - slot <= ON_TIME else "missed"))
        current["lastSlot"], current["nextRun"] = last, next_run
        wake_at = next_run if wake_at is None else min(wake_at, next_run)
    return due, new_state, wake_at
