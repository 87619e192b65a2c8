"""Log compaction keeps every record, in order, and readers never see one twice or miss one."""

from __future__ import annotations

import json
import time

import pytest

from mnemos.engram import Engram
from mnemos.wraith.compaction import KEEP_REPLACED_S, MANIFESTS, compact_log, read_log

LATER = time.time() + 3600  # "now" for compaction: every segment written by the test is sealed


def _fill(engram: Engram, log: str, segments: int, start: int = 0) -> list[dict]:
    written = []
    n = start
    for i in range(segments):
        batch = [{"n": n + j, "seg": i} for j in range(1 + i % 4)]
        n += len(batch)
        engram.append(log, batch)
        written.extend(batch)
    return written


@pytest.mark.parametrize("log", ["lineage", "journal/cortex"])
def test_compaction_keeps_every_record_in_order(engram: Engram, log: str) -> None:
    written = _fill(engram, log, 12)
    before = list(engram.read_log(log))
    assert before == written and len(engram.segments(log)) == 12

    report = compact_log(engram, log, now=LATER, min_age=0)

    assert report.segments_before == 12 and report.segments_after == 1
    assert report.records == len(written)
    after = list(engram.read_log(log))
    assert len(after) == len(before) and after == before
    assert list(read_log(engram, log)) == before
    # compacting again with new segments: the compacted one is merged with them, order kept
    more = _fill(engram, log, 5, start=len(written))
    second = compact_log(engram, log, now=LATER, min_age=0)
    assert second.segments_after == 1
    assert list(engram.read_log(log)) == written + more
    # the manifest of the replaced compacted segment is gone; one manifest per compacted segment
    assert len(engram.list(f"{log}/{MANIFESTS}")) == 1


def test_young_and_foreign_segments_stay(local_engram: Engram) -> None:
    log = "lineage"
    old = _fill(local_engram, log, 4)
    cutoff = time.time()
    local_engram.write_bytes(f"{log}/zz-foreign.json", json.dumps([{"n": "foreign"}]).encode())
    report = compact_log(local_engram, log, now=cutoff + 1, min_age=0, keep_replaced=0)
    assert report.segments_after == 2  # the merged one and the foreign one
    time.sleep(0.01)
    young = _fill(local_engram, log, 3, start=len(old))
    report = compact_log(local_engram, log, now=time.time() + 100, min_age=300)
    assert report.merged == []  # everything younger than min_age: nothing merged
    assert list(local_engram.read_log(log)) == old + young + [{"n": "foreign"}]  # "zz-…" sorts last


def test_max_records_splits_runs(local_engram: Engram) -> None:
    log = "lineage"
    written = _fill(local_engram, log, 20)  # 1..4 records per segment, 50 in all
    report = compact_log(local_engram, log, now=LATER, min_age=0, max_records=10)
    assert 5 <= report.segments_after < 20
    assert list(read_log(local_engram, log)) == written
    keys = local_engram.segments(log)
    sizes = [len(json.loads(local_engram.read_bytes(k))) for k in keys]
    assert max(sizes) <= 10


def test_reader_during_compaction_sees_each_record_once(engram: Engram) -> None:
    log = "lineage"
    written = _fill(engram, log, 10)
    reader = read_log(engram, log)
    head = [next(reader) for _ in range(3)]  # listed the ten segments, read into the first ones
    compact_log(engram, log, now=LATER, min_age=0)  # the rest of what it listed is gone now
    rest = list(reader)
    assert head + rest == written


def test_crash_after_write_before_delete_is_recovered(local_engram: Engram) -> None:
    log = "journal/cortex"
    written = _fill(local_engram, log, 6)
    saved = {k: local_engram.read_bytes(k) for k in local_engram.segments(log)}
    compact_log(local_engram, log, now=LATER, min_age=0)
    for key, data in saved.items():  # the crash: originals still there next to the merged segment
        local_engram.write_bytes(key, data)
    assert len(local_engram.segments(log)) == 7
    raw = [r for k in local_engram.segments(log) for r in json.loads(local_engram.read_bytes(k))]
    assert len(raw) == 2 * len(written)  # every record twice on disk: a naive reader would repeat them
    assert list(read_log(local_engram, log)) == written  # the manifest-aware reader dedupes

    report = compact_log(local_engram, log, now=LATER, min_age=0)
    assert sorted(report.recovered) == sorted(saved)
    assert len(local_engram.segments(log)) == 1
    assert list(local_engram.read_log(log)) == written


def test_orphan_manifest_is_dropped_and_originals_kept(local_engram: Engram) -> None:
    log = "lineage"
    written = _fill(local_engram, log, 3)
    first = local_engram.segments(log)[0]
    stem = first.rsplit("/", 1)[-1].removesuffix(".json")
    orphan = f"{log}/{MANIFESTS}/{stem}-c999998.json"
    local_engram.write_json(orphan, {"replaces": local_engram.segments(log), "segments": []})  # crash after step 1
    report = compact_log(local_engram, log, now=LATER, min_age=0)
    assert orphan in report.recovered
    assert list(read_log(local_engram, log)) == written


class _ListingDuringMerge(Engram):
    """A store whose first listing of ``log`` spans a compaction, and returns only what was there
    all along: what a directory read or S3's pages guarantee (keys written or deleted meanwhile
    may be missing). The merge runs in real time, with the default wait before deleting."""

    def __init__(self, root: str, log: str) -> None:
        super().__init__(root)
        self.log, self.spanned = log, False

    def list(self, prefix: str) -> list[str]:
        if prefix != self.log or self.spanned:
            return super().list(prefix)
        self.spanned = True
        before = set(super().list(prefix))
        compact_log(Engram(self.uri), self.log, min_age=0)
        return sorted(before & set(super().list(prefix)))


def test_a_listing_that_spans_a_merge_misses_no_record(tmp_path) -> None:
    log = "lineage"
    engram = _ListingDuringMerge(str(tmp_path / "root"), log)
    written = _fill(engram, log, 8)
    assert list(read_log(engram, log)) == written and engram.spanned  # (every record was lost before)

    # Within the wait, a run merges new segments but never the replaced ones again; after it,
    # a run deletes them, and each record is on disk once.
    more = _fill(engram, log, 3, start=len(written))
    report = compact_log(engram, log, min_age=0)
    assert report.recovered == [] and list(read_log(engram, log)) == written + more
    report = compact_log(engram, log, min_age=0, now=time.time() + KEEP_REPLACED_S + 1)
    assert len(report.recovered) == 8 + 3
    on_disk = [r for k in engram.segments(log) for r in json.loads(engram.read_bytes(k))]
    assert sorted(r["n"] for r in on_disk) == [r["n"] for r in written + more]
    assert list(read_log(engram, log)) == written + more


def test_a_task_run_is_counted_in_the_metrics(local_engram: Engram) -> None:
    """`mnemos_wraith_cron_runs_total{job,status}` was documented and never counted."""
    from mnemos.trace import metrics
    from mnemos.wraith.tasks import compact_logs

    before = metrics.WRAITH_CRON_RUNS.value(job="compact-logs", status="succeeded")
    failed = metrics.WRAITH_CRON_RUNS.value(job="compact-logs", status="failed")
    _fill(local_engram, "lineage", 3)
    assert compact_logs(local_engram.uri, None, {"logs": ["lineage"], "min_age": 0})["logs"][0]["records"] == 6
    with pytest.raises(Exception, match="lineage/\\.\\./x"):
        compact_logs(local_engram.uri, None, {"logs": ["lineage/../x"], "min_age": 0})
    assert metrics.WRAITH_CRON_RUNS.value(job="compact-logs", status="succeeded") == before + 1
    assert metrics.WRAITH_CRON_RUNS.value(job="compact-logs", status="failed") == failed + 1
