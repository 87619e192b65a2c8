"""When WRAITH tasks are due: cron schedules (UTC, croniter) and intervals, with missed runs run once.

The state of each entry is ``lastSlot``: the latest scheduled time already handled. An entry is
due when its next slot after ``lastSlot`` has passed; it then runs once, and ``lastSlot`` jumps to
the latest slot at or before now, so a scheduler that was down for a day runs a ``*/15`` task
once on restart, not 96 times. An entry seen for the first time starts counting from now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from croniter import croniter

from mnemos.engram import Engram
from mnemos.errors import ValidationError

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

    def __post_init__(self) -> None:
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
    """``{task: {lastSlot, nextRun, lastRun, lastJob, lastStatus, lastReason}}`` as last stored."""
    return engram.read_json(STATE) if engram.exists(STATE) else {}


def entries_from_settings(settings: Any) -> list[ScheduleEntry]:
    """The cron jobs of ``settings.wraith.cronjobs``, ``backup`` on ``engram.backups.schedule`` (unless
    declared there), and ``gitops-sync`` when a repo is configured."""
    out = [ScheduleEntry(c.name, schedule=c.schedule, enabled=c.enabled) for c in settings.wraith.cronjobs]
    if not any(e.name == "backup" for e in out):  # the seed's engram.backups.schedule
        out.append(ScheduleEntry("backup", schedule=settings.engram.backups.schedule))
    gitops = settings.wraith.gitops
    if gitops.repo and not any(e.name == "gitops-sync" for e in out):
        out.append(ScheduleEntry("gitops-sync", interval=float(gitops.interval)))
    return out


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
        if not entry.enabled:
            current["nextRun"] = None
            continue
        last_slot = current.get("lastSlot")
        if last_slot is None:
            current["lastSlot"] = last_slot = now  # first sight: count from now
        slot = entry.next_after(float(last_slot))
        if slot <= now:
            due.append((entry.name, "schedule" if now - slot <= ON_TIME else "missed"))
            current["lastSlot"] = entry.latest_at(now)
        current["nextRun"] = entry.next_after(float(current["lastSlot"]))
        wake_at = current["nextRun"] if wake_at is None else min(wake_at, current["nextRun"])
    return due, new_state, wake_at
