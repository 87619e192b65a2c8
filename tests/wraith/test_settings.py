"""WRAITH and backup settings are checked when settings load, naming the field and the fix."""

from __future__ import annotations

import json

import pytest

from mnemos.config import WRAITH_TASKS, load_settings
from mnemos.errors import ValidationError
from mnemos.wraith.tasks import TASKS


def _cronjobs(monkeypatch: pytest.MonkeyPatch, jobs: object) -> None:
    monkeypatch.delenv("MNEMOS_CONFIG", raising=False)
    monkeypatch.setenv("MNEMOS_WRAITH__CRONJOBS", jobs if isinstance(jobs, str) else json.dumps(jobs))


@pytest.mark.parametrize(
    ("jobs", "param", "message"),
    [
        (
            [{"name": "backup", "schedule": "bad"}],
            "settings.wraith.cronjobs.0.schedule",
            "'bad' is not a cron schedule",
        ),
        (  # croniter reads a sixth field as seconds: every second from 03:00:00 to 03:00:59
            [{"name": "backup", "schedule": "0 3 * * * *"}],
            "settings.wraith.cronjobs.0.schedule",
            "'0 3 * * * *' has 6 fields: use five",
        ),
        (
            [{"name": "backup", "schedule": "* * * * *"}, {"name": "retention", "schedule": "0 0 31 2 *"}],
            "settings.wraith.cronjobs.1.schedule",
            "'0 0 31 2 *' never fires within 5 years",
        ),
        (
            [{"name": "nosuchtask", "schedule": "* * * * *"}],
            "settings.wraith.cronjobs.0.name",
            "unknown WRAITH task 'nosuchtask': valid tasks are compact-logs, replay-events",
        ),
        (
            [{"name": "backup", "schedule": "0 * * * *"}, {"name": "backup", "schedule": "5 * * * *"}],
            "settings.wraith.cronjobs",
            "entries 0 and 1 both name the task 'backup': keep one",
        ),
    ],
)
def test_bad_cronjobs_are_refused_when_settings_load(monkeypatch, jobs, param, message) -> None:
    _cronjobs(monkeypatch, jobs)
    with pytest.raises(ValidationError) as caught:
        load_settings()
    assert caught.value.param == param
    assert caught.value.message.startswith(f"{param}: {message}")


def test_backup_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMOS_ENGRAM__BACKUPS__RETENTIONDAYS", "-1")
    with pytest.raises(ValidationError, match=r"^settings\.engram\.backups\.retentionDays: "):
        load_settings()
    monkeypatch.setenv("MNEMOS_ENGRAM__BACKUPS__RETENTIONDAYS", "7")
    monkeypatch.setenv("MNEMOS_ENGRAM__BACKUPS__SCHEDULE", "0 0 30 2 *")
    with pytest.raises(ValidationError, match=r"^settings\.engram\.backups\.schedule: '0 0 30 2 \*' never fires"):
        load_settings()


def test_a_variable_that_is_not_json_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _cronjobs(monkeypatch, "notjson")
    monkeypatch.setenv("MNEMOS_WRAITH__GITOPS__REPO", "/not/json/but/a/string")  # a plain string: not named
    with pytest.raises(ValidationError, match=r"^MNEMOS_WRAITH__CRONJOBS is not valid JSON: give a JSON list"):
        load_settings()


def test_good_schedules_load_and_task_names_match_the_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    _cronjobs(
        monkeypatch, [{"name": "backup", "schedule": "0 0 29 2 *"}, {"name": "retention", "schedule": "*/5 * * * *"}]
    )
    assert [c.name for c in load_settings().wraith.cronjobs] == ["backup", "retention"]
    assert set(WRAITH_TASKS) == set(TASKS)


def test_declaring_queues_keeps_the_default_and_wraith_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    """WRAITH's tasks run on the queue ``wraith`` and jobs go to ``default`` unless told: an
    operator's own queues add to these (and may tune them), never remove them."""
    monkeypatch.delenv("MNEMOS_CONFIG", raising=False)
    monkeypatch.setenv("MNEMOS_CORTEX__QUEUES", json.dumps({"gpu": {"concurrency": 2}, "default": {"concurrency": 3}}))
    queues = load_settings().cortex.queues
    assert sorted(queues) == ["default", "gpu", "wraith"]
    assert queues["default"].concurrency == 3 and queues["gpu"].concurrency == 2 and queues["wraith"].concurrency == 10
