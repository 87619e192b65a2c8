"""``mnemos._gil``: background batches release the GIL every few items; long lists are encoded in chunks."""

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


def test_dump_json_paced_is_dump_json_in_chunks_with_a_pause_between(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from mnemos._model import dump_json

    pauses: list[float] = []
    monkeypatch.setattr(_gil.time, "sleep", pauses.append)
    records = [{"id": i, "name": f"n{i}", "nested": {"ok": True}} for i in range(10)]
    records[5]["name"] = "\udcff"  # a lone surrogate: dump_json's fallback encoder, in one chunk only
    encoded = _gil.dump_json_paced(records, chunk=4)
    assert json.loads(encoded) == json.loads(dump_json(records)) == records
    assert len(pauses) == 2 and all(s > 0 for s in pauses)  # between the chunks 0-3, 4-7 and 8-9
    pauses.clear()
    assert _gil.dump_json_paced(records[:4], chunk=4) == dump_json(records[:4])  # one chunk: no pause
    assert _gil.dump_json_paced([], chunk=4) == b"[]"
    assert pauses == []
