"""``mnemos._gil.paced``: background batches release the GIL every few items."""

from __future__ import annotations

import pytest

from mnemos import _gil


def test_paced_yields_every_item_in_order_and_pauses_every_n(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[tuple[int, float]] = []
    seen: list[int] = []
    monkeypatch.setattr(_gil.time, "sleep", lambda s: pauses.append((len(seen), s)))
    for item in _gil.paced(iter(range(10)), every=4):
        seen.append(item)
    assert seen == list(range(10))
    # a pause after the 4th and the 8th item, each a real sleep (which releases the GIL)
    assert [at for at, _ in pauses] == [4, 8]
    assert all(s > 0 for _, s in pauses)
