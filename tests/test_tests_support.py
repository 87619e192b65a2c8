"""The polling helper the tests share (``tests_support.until``): what it returns and how it fails."""

from __future__ import annotations

import pytest
from tests_support import until


def test_until_returns_the_first_value_that_is_ready() -> None:
    answers = iter([0, [], "", {"phase": "Pending"}, {"phase": "Starting"}, {"phase": "Ready"}, {"phase": "Gone"}])
    assert until(lambda: next(answers), "a truthy value", interval=0) == {"phase": "Pending"}
    ready = until(lambda: next(answers), "Ready", ready=lambda s: s["phase"] == "Ready", interval=0)
    assert ready == {"phase": "Ready"}


def test_until_names_what_it_waited_for_and_the_last_value() -> None:
    tries = iter(range(1_000_000))
    with pytest.raises(AssertionError) as failed:
        until(lambda: {"phase": "Pending", "try": next(tries)}, "model m to be Ready",
              ready=lambda s: s["phase"] == "Ready", timeout=0, interval=0)  # fmt: skip
    assert str(failed.value).startswith("model m to be Ready: not within 0 s (last: {'phase': 'Pending', 'try': ")
