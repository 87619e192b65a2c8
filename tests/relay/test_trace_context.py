"""A chat or embeddings request joins the client's W3C trace (``traceparent``), as any
OpenTelemetry-instrumented server does, and its ``relay.request`` span names the model it served
(it once stayed ``unknown``, the value before the body was read)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from relay_support import Relay
from tests_support import until

from mnemos.trace import spans_for


def test_a_chat_request_joins_the_clients_trace_and_names_its_model(relay: Relay) -> None:
    relay.sync()
    trace_id, parent = uuid.uuid4().hex, "00f067aa0ba902b7"
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    answer = httpx.post(f"{relay.url}/v1/chat/completions", json=body, timeout=60,
                        headers={"traceparent": f"00-{trace_id}-{parent}-01"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    spans: dict[str, Any] = {}

    def more() -> dict[str, Any]:  # the trace's spans, once one more than last time is in (or 10 s passed)
        spans.update({s["name"]: s for s in spans_for(trace_id, min_spans=len(spans) + 1, timeout=10)})
        return spans

    until(more, "the relay.request span", ready=lambda named: "relay.request" in named, timeout=60)  # it may come last
    request = spans["relay.request"]
    assert request["trace_id"] == trace_id and request["parent_span_id"] == parent
    assert request["attributes"]["model"] == "echo", request
