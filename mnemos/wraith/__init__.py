"""WRAITH: the housekeeper — log compaction, dead-job replay, blob retention, backups, GitOps sync.

The ``wraith`` actor (``ensure``) runs the cron schedules of ``settings.wraith.cronjobs`` and
submits each run as a CORTEX job on the ``wraith`` queue; every task also runs in-process
(``run_local``). See the WRAITH section of README.md.
"""

from typing import Any

from mnemos.wraith.backup import BackupReport, RestoreReport, backup, default_destination, list_snapshots, restore
from mnemos.wraith.compaction import CompactionReport, compact_log, read_log
from mnemos.wraith.gitops import DiffEntry, SyncReport, diff, sync, sync_loop
from mnemos.wraith.retention import RetentionReport, reachable_blobs, retain
from mnemos.wraith.schedule import ScheduleEntry, entries_from_settings, plan
from mnemos.wraith.tasks import TASKS, run_local

__all__ = [
    "TASKS",
    "BackupReport",
    "CompactionReport",
    "DiffEntry",
    "RestoreReport",
    "RetentionReport",
    "ScheduleEntry",
    "SyncReport",
    "backup",
    "compact_log",
    "default_destination",
    "diff",
    "ensure",
    "entries_from_settings",
    "list_snapshots",
    "plan",
    "reachable_blobs",
    "read_log",
    "restore",
    "retain",
    "run_local",
    "sync",
    "sync_loop",
]


def ensure(settings: Any, engram: Any) -> Any:
    """Get or create the ``wraith`` actor (imports Ray only when called)."""
    from mnemos.wraith.scheduler import ensure as _ensure

    return _ensure(settings, engram)
