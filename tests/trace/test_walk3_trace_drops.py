"""The collector's own drops are counted: a trace keeps its first ``max_spans_per_trace`` spans (2,000), and
the spans past it (a pipeline of thousands of steps, or requests sent into one trace) were dropped with
``mnemos_trace_spans_dropped_total`` still at 0, so a truncated trace showed nowhere on ``/metrics``."""

from __future__ import annotations

import asyncio
import os

from mnemos.trace import telemetry
from mnemos.trace.metrics import TRACE_SPANS_DROPPED


def _span(trace_id: str, i: int) -> dict[str, object]:
    return {"trace_id": trace_id, "span_id": f"{i:016x}", "parent_span_id": None, "name": "s", "start_time": 1.0,
            "end_time": 2.0, "attributes": {}, "events": []}  # fmt: skip


def test_spans_past_a_traces_cap_are_counted_as_dropped() -> None:
    collector = telemetry.SpanCollector(max_spans_per_trace=5)
    trace = os.urandom(16).hex()
    before = TRACE_SPANS_DROPPED.value()
    assert asyncio.run(collector.add([_span(trace, i) for i in range(8)])) == 5
    assert asyncio.run(collector.add([_span(trace, i) for i in range(8, 10)])) == 0
    assert TRACE_SPANS_DROPPED.value() - before == 5
    assert asyncio.run(collector.add([_span(os.urandom(16).hex(), 0)])) == 1  # another trace: nothing dropped
    assert TRACE_SPANS_DROPPED.value() - before == 5
