"""``GET /v1/events``: a filtered stream that sent nothing while the bus moved on resumes after a
keepalive without a spurious ``reset`` (the keepalive carries the stream's position)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import Request
from relay_support import wait_until
from tests_support import serving

CAPACITY = 5
"""Events the private bus keeps: a handful of events pushes a position out of its ring."""


@pytest.fixture(scope="module")
def small_bus(ray_cluster: None) -> Iterator[tuple[str, Any]]:
    """``/v1/events`` (authentication off) over a private ``EventBus`` keeping ``CAPACITY`` events,
    served by uvicorn on 127.0.0.1; the URL and the bus."""
    import ray

    from mnemos.trace.events import EventBus

    handle = ray.remote(EventBus).options(num_cpus=0, max_concurrency=100).remote(CAPACITY)
    with _served(lambda: handle) as url:
        yield url, handle
    ray.kill(handle)


@contextlib.contextmanager
def _served(bus: Any, max_total: int | None = None) -> Iterator[str]:
    """``/v1/events`` (authentication off) over an ``EventHub`` of ``bus`` (a factory of the bus
    handle), served by uvicorn on 127.0.0.1 while the block runs; its URL."""
    from fastapi import FastAPI

    from mnemos.relay._errors import install_error_handlers
    from mnemos.relay.event_stream import EventHub, build_router

    async def admit(request: Request, verb: str) -> None:
        return None

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(admit, EventHub(bus), max_streams=4, max_total=max_total))
    with serving(app, lifespan="off") as url:
        yield f"{url}/v1/events"


def _frames(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """The frames of an SSE response: their fields, and ``comment`` for a comment line."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if fields:
                yield fields
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name or "comment"] = value.removeprefix(" ")


def _events(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"type": "resource.configured", "subject": f"Policy/api-events-{i}", "owner": None, "ts": time.time(),
             "data": {"kind": "Policy", "name": f"api-events-{i}", "generation": 1, "action": "configured"}}
            for i in range(start, start + n)]  # fmt: skip


def test_a_reconnect_after_a_keepalive_resumes_without_a_reset(small_bus: tuple[str, Any]) -> None:
    """A stream for one job's events, opened while the bus moved on by more than it keeps: its
    keepalives carried no id, so the client still held the id of ``: connected``, and reconnecting
    with it was answered ``event: reset`` ("older than the buffer") though it had missed nothing.
    Now each keepalive carries the stream's position and the reconnect resumes cleanly."""
    import ray

    url, bus = small_bus
    params = {"types": "job", "subject": "job:api-events", "heartbeat": "1"}
    timeout = httpx.Timeout(10.0, read=10.0)
    with httpx.stream("GET", url, params=params, timeout=timeout) as response, \
            httpx.stream("GET", url, params={"types": "resource"}, timeout=timeout) as watcher:  # fmt: skip
        assert response.status_code == 200 and watcher.status_code == 200, response.read()
        frames = _frames(response.iter_lines())
        connected = next(frames)
        assert connected.get("comment") == "connected", connected
        seen = _frames(watcher.iter_lines())
        for batch in range(4):  # past what the bus keeps, none for this stream, in batches the hub reads whole
            last = ray.get(bus.publish.remote(_events(3, start=3 * batch)))
            assert any(f.get("id") == str(last) for f in seen)  # the hub passed them (it feeds both streams)
        position = connected["id"]
        for _ in range(30):  # keepalives, one a second, until one carries the bus's position
            frame = next(frames)
            assert frame.get("comment") == "keepalive" and "data" not in frame, frame
            position = frame.get("id", position)
            if position == str(last):
                break
        assert position == str(last), f"no keepalive carried the stream's position {last} (last id: {position})"
    # The client resumes from the keepalive's id: no reset, and the next event of its job arrives.
    with httpx.stream("GET", url, params=params, headers={"Last-Event-ID": position},
                      timeout=httpx.Timeout(10.0, read=10.0)) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        mine = {"type": "job.running", "subject": "job:api-events", "owner": "alice", "ts": time.time(),
                "data": {"status": "running"}}  # fmt: skip
        ident = ray.get(bus.publish.remote([mine]))
        first = next(f for f in _frames(response.iter_lines()) if "comment" not in f)
    assert "event" not in first and first["id"] == str(ident), first


def test_a_burst_larger_than_the_bus_keeps_is_a_reset_saying_so(small_bus: tuple[str, Any]) -> None:
    """More events in one publish than the bus keeps, while the gateway's read waited on the bus:
    the read computed "nothing dropped" before it waited, so the events pushed out of the ring were
    lost without a ``reset``; and a reset there said "the event bus restarted". Now the stream gets
    a reset naming the burst, then the events the bus still holds."""
    import json

    import ray

    url, bus = small_bus
    with httpx.stream("GET", url, params={"types": "resource"}, timeout=httpx.Timeout(10.0, read=10.0)) as response:
        assert response.status_code == 200, response.read()
        frames = _frames(response.iter_lines())
        assert next(frames).get("comment") == "connected"
        time.sleep(0.5)  # the hub is waiting on the bus now
        last = ray.get(bus.publish.remote(_events(CAPACITY + 3, start=100)))
        got = []
        for frame in frames:
            if "comment" in frame:
                continue
            got.append(frame)
            if frame.get("id") == str(last):
                break
    assert got[0].get("event") == "reset", got
    reason = json.loads(got[0]["data"])["reason"]
    assert "burst" in reason and "restarted" not in reason, reason
    assert [int(f["id"]) for f in got[1:]] == list(range(last - CAPACITY + 1, last + 1))


class _SlowLast:
    """A real bus whose ``last`` answers after ``delay`` s, as a bus busy with other callers may."""

    def __init__(self, handle: Any, delay: float) -> None:
        self._handle, self._delay = handle, delay
        self.last = self  # ``bus.last.remote()``

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    async def remote(self) -> int:
        await asyncio.sleep(self._delay)
        return await self._handle.last.remote()


def test_an_event_published_once_the_client_has_its_200_reaches_it(small_bus: tuple[str, Any]) -> None:
    """A stream opened without ``Last-Event-ID`` took its position from the bus after the 200 was
    sent: an event published by the client right after it had the 200 (while the bus was slow to
    answer) fell before that position and never came. The position is now taken before the 200."""
    import ray

    _, handle = small_bus
    timeout = httpx.Timeout(10.0, read=10.0)
    with _served(lambda: _SlowLast(handle, 1.0)) as url, \
            httpx.stream("GET", url, params={"types": "resource"}, timeout=timeout) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        published = ray.get(handle.publish.remote(_events(1, start=200)))
        frames = _frames(response.iter_lines())
        connected = next(frames)
        assert connected.get("comment") == "connected" and int(connected["id"]) < published, connected
        first = next(f for f in frames if "comment" not in f)
    assert first["id"] == str(published) and "api-events-200" in first["data"], first


def test_a_burst_before_a_new_stream_reads_is_a_reset_that_names_no_last_event_id(small_bus: tuple[str, Any]) -> None:
    """A stream opened without ``Last-Event-ID``, when more events than the bus keeps came between
    its 200 and its first read of the bus: the reset must not blame a ``Last-Event-ID`` the client
    never sent; it names the burst."""
    import json

    import ray

    _, handle = small_bus
    timeout = httpx.Timeout(10.0, read=10.0)
    with _served(lambda: _SlowLast(handle, 1.0)) as url, \
            httpx.stream("GET", url, params={"types": "resource"}, timeout=timeout) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        last = ray.get(handle.publish.remote(_events(CAPACITY + 3, start=300)))  # while the stream subscribes
        got = list(itertools.islice((f for f in _frames(response.iter_lines()) if "comment" not in f), 1 + CAPACITY))
    assert got[0].get("event") == "reset", got
    reason = json.loads(got[0]["data"])["reason"]
    assert "burst" in reason and "Last-Event-ID" not in reason, reason
    assert [int(f["id"]) for f in got[1:]] == list(range(last - CAPACITY + 1, last + 1))


def test_a_replica_holds_a_bounded_number_of_streams_of_all_callers(small_bus: tuple[str, Any]) -> None:
    """Each open stream holds one of the gateway replica's 256 concurrent requests: eight keys at
    their 32 streams each took every one, and chat on that replica waited behind them. Past
    ``relay.maxEventStreamsTotal`` a stream is a 503 naming it, and a closed stream frees its place."""
    _, bus = small_bus
    timeout = httpx.Timeout(10.0, read=10.0)
    with _served(lambda: bus, max_total=2) as url, httpx.stream("GET", url, timeout=timeout) as first:
        with httpx.stream("GET", url, timeout=timeout) as second:
            assert first.status_code == 200 and second.status_code == 200
            refused = httpx.get(url, timeout=timeout)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "5", refused.text
            error = refused.json()["error"]
            assert "relay.maxEventStreamsTotal" in error["message"] and error["param"] == "events", error

        def reopened() -> bool:  # the server frees the closed stream's place once it sees the client gone
            with httpx.stream("GET", url, timeout=timeout) as again:
                return again.status_code == 200

        wait_until(reopened, timeout=30)
