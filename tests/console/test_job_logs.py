"""The job page's logs and its live ``job.log`` events show each line once (no cluster: pure parts).

A line printed while the page is read reaches it twice: in the rendered text and as an event after
the page's ``since``. The events are numbered per attempt (``n``), and the page skips those up to the
number of lines it was rendered with.
"""

from __future__ import annotations

import pytest

from mnemos.neuron import worker
from mnemos.relay.console.app import shown_logs


def test_a_running_attempt_shows_its_complete_lines_and_leaves_the_unfinished_one_to_its_event() -> None:
    text, attempt, lines = shown_logs([(1, "running", "line 1/6\nline 2/6\nli")])
    assert (text, attempt, lines) == ("line 1/6\nline 2/6\n", 1, 2)


def test_finished_attempts_keep_their_headers_and_the_count_is_of_the_last_one() -> None:
    parts = [(1, "retried", "a\nb\n"), (2, "succeeded", "c\nd\ne")]
    text, attempt, lines = shown_logs(parts)
    assert text == "--- attempt 1 (retried) ---\na\nb\n--- attempt 2 (succeeded) ---\nc\nd\ne\n"
    assert (attempt, lines) == (2, 2)  # a finished attempt's last line stays (its event came before)
    assert shown_logs([]) == ("", None, 0)


def test_job_log_events_number_the_lines_of_each_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, str, dict]] = []
    monkeypatch.setattr(worker, "announce", lambda kind, subject, **data: sent.append((kind, subject, data)))
    capture = worker._Capture(job_id="j-1", owner="alice", attempt=3)
    capture.write("one\ntw")
    capture.write("o\nthree")
    capture.close()
    assert [(d["attempt"], d["n"], d["line"]) for _, _, d in sent] == [(3, 1, "one"), (3, 2, "two"), (3, 3, "three")]
    assert {(kind, subject, d["owner"]) for kind, subject, d in sent} == {("job.log", "job:j-1", "alice")}
