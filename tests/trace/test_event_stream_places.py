"""``GET /v1/events`` counts a caller's streams when it admits them (``relay.maxEventStreams``).

A stream used to be counted only once its body started streaming, after the handler had returned:
requests arriving together all passed the count (200 at once gave a developer's key 61 streams
where 32 were allowed). Here the first stream's client is slow to take its response, so its body
has not started when the second request arrives: that one is a 429, and the first one's place is
given back when its response ends, even though it never streamed. An empty ``subject`` (which no
event has) is a 422 naming it, not a stream that never sends anything.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request

from mnemos.relay._errors import install_error_handlers
from mnemos.relay.event_stream import EventHub, build_router
from mnemos.soul.identity import Principal
from mnemos.trace.events import bus

ALICE = Principal("alice", "developer", "apikey", team="red")


def _app(hub: EventHub) -> FastAPI:
    async def admit(request: Request, verb: str) -> Any:
        return ALICE

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(admit, hub, max_streams=1))
    return app


def _scope(query: str = "heartbeat=1") -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": "/v1/events", "raw_path": b"/v1/events", "query_string": query.encode(), "headers": [],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "root_path": ""}  # fmt: skip


async def _open(app: FastAPI, gate: asyncio.Event, statuses: list[int], query: str = "heartbeat=1") -> None:
    """One request whose client takes its response only once ``gate`` is set, then goes away."""

    async def receive() -> dict[str, Any]:
        await gate.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
            if message["status"] == 200:
                await gate.wait()

    await app(_scope(query), receive, send)


def test_streams_are_counted_when_admitted_not_when_they_start(ray_cluster: None) -> None:
    hub = EventHub(bus)
    app = _app(hub)

    async def main() -> tuple[list[int], list[int], int, int]:
        gate = asyncio.Event()
        first: list[int] = []
        second: list[int] = []
        held = asyncio.ensure_future(_open(app, gate, first))
        while not first:
            await asyncio.sleep(0.01)
        more = asyncio.ensure_future(_open(app, gate, second))
        while not second:
            await asyncio.sleep(0.01)
        during = hub.open_streams(ALICE)
        gate.set()
        await asyncio.wait_for(asyncio.gather(held, more), 30)
        await hub.close()
        return first, second, during, hub.open_streams(ALICE)

    first, second, during, after = asyncio.run(main())
    assert first == [200]
    assert second == [429]
    assert during == 1 and after == 0  # its place is given back though it never streamed


def test_an_empty_subject_is_refused(ray_cluster: None) -> None:
    hub = EventHub(bus)
    app = _app(hub)

    async def main() -> list[int]:
        gate, statuses = asyncio.Event(), []
        gate.set()
        for query in ("subject=", "subject=%20job:j-1"):
            await asyncio.wait_for(_open(app, gate, statuses, query), 30)
        return statuses

    assert asyncio.run(main()) == [422, 422]
    assert hub.open_streams(ALICE) == 0
