"""When tasks are due, with an injected clock: on time, after downtime (once), disabled, intervals."""

from __future__ import annotations

import calendar
import time

import pytest

from mnemos.config import load_settings
from mnemos.errors import ValidationError
from mnemos.wraith.schedule import ScheduleEntry, entries_from_settings, plan


def at(stamp: str) -> float:
    """``2030-01-01 03:00:00`` (UTC) as a timestamp."""
    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")))


NIGHTLY = ScheduleEntry("compact-logs", schedule="0 3 * * *")
QUARTER = ScheduleEntry("replay-events", schedule="*/15 * * * *")


def test_first_sight_counts_from_now() -> None:
    due, state, wake = plan([NIGHTLY, QUARTER], {}, at("2030-01-01 02:50:00"))
    assert due == []
    assert state["compact-logs"] == {"lastSlot": at("2030-01-01 02:50:00"), "nextRun": at("2030-01-01 03:00:00")}
    assert state["replay-events"]["nextRun"] == at("2030-01-01 03:00:00")
    assert wake == at("2030-01-01 03:00:00")


def test_due_on_time_runs_once_then_waits_for_the_next_slot() -> None:
    _, state, _ = plan([NIGHTLY, QUARTER], {}, at("2030-01-01 02:50:00"))
    due, state, wake = plan([NIGHTLY, QUARTER], state, at("2030-01-01 03:00:01"))
    assert due == [("compact-logs", "schedule"), ("replay-events", "schedule")]
    assert wake == at("2030-01-01 03:15:00")
    due, state, _ = plan([NIGHTLY, QUARTER], state, at("2030-01-01 03:00:05"))
    assert due == []  # the same slot never runs twice
    assert state["compact-logs"]["nextRun"] == at("2030-01-02 03:00:00")


def test_missed_runs_after_downtime_run_once() -> None:
    _, state, _ = plan([QUARTER], {}, at("2030-01-01 00:00:00"))
    # down for a day: 96 slots of */15 were missed
    due, state, wake = plan([QUARTER], state, at("2030-01-02 00:07:00"))
    assert due == [("replay-events", "missed")]
    assert state["replay-events"]["lastSlot"] == at("2030-01-02 00:00:00")
    assert wake == at("2030-01-02 00:15:00")
    assert plan([QUARTER], state, at("2030-01-02 00:10:00"))[0] == []


def test_disabled_entries_and_intervals() -> None:
    off = ScheduleEntry("backup", schedule="0 */6 * * *", enabled=False)
    every = ScheduleEntry("gitops-sync", interval=300)
    t0 = at("2030-01-01 00:00:10")
    _, state, wake = plan([off, every], {}, t0)
    assert wake == t0 + 300 and state["backup"]["nextRun"] is None
    due, state, wake = plan([off, every], state, t0 + 301)
    assert due == [("gitops-sync", "schedule")] and wake == t0 + 601
    due, _, _ = plan([off, every], state, t0 + 86400)
    assert due == [("gitops-sync", "missed")]


def test_bad_entries_are_named() -> None:
    with pytest.raises(ValidationError, match="'61 \\* \\* \\* \\*' is not a cron schedule"):
        ScheduleEntry("x", schedule="61 * * * *")
    with pytest.raises(ValidationError, match="needs a schedule or an interval"):
        ScheduleEntry("x")


def test_entries_from_default_settings() -> None:
    names = [(e.name, e.every) for e in entries_from_settings(load_settings())]
    assert names[:4] == [
        ("compact-logs", "0 3 * * *"),
        ("replay-events", "*/15 * * * *"),
        ("retention", "30 3 * * *"),
        ("backup", "0 */6 * * *"),
    ]


def test_an_entry_that_cannot_be_planned_does_not_stop_the_others() -> None:
    """Settings refuse such schedules; settings made without validation still plan every good entry."""
    from types import SimpleNamespace

    settings = SimpleNamespace(
        wraith=SimpleNamespace(
            cronjobs=[
                SimpleNamespace(name="backup", schedule="* * * * *", enabled=True),
                SimpleNamespace(name="retention", schedule="0 0 31 2 *", enabled=True),  # never fires
                SimpleNamespace(name="compact-logs", schedule="bad", enabled=True),
            ],
            gitops=SimpleNamespace(repo=None),
        ),
        engram=SimpleNamespace(backups=SimpleNamespace(schedule="0 */6 * * *")),
    )
    entries = entries_from_settings(settings)
    t0 = at("2030-01-01 03:00:30")
    _, state, _ = plan(entries, {}, t0)
    due, state, wake_at = plan(entries, state, t0 + 60)
    assert due == [("backup", "schedule")]
    assert wake_at == at("2030-01-01 03:02:00")
    assert "cannot plan retention" in state["retention"]["error"] and state["retention"]["nextRun"] is None
    assert "'bad' is not a cron schedule" in state["compact-logs"]["error"]
    assert "error" not in state["backup"]
