"""``GET /v1/events``: live resource changes through the real gateway, resumption with
``Last-Event-ID``, and per-caller filtering (a developer never receives another's job logs)."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Request
from relay_support import Relay, assert_openai_error, wait_until
from tests_support import model_doc, serving

from mnemos.trace.events import parse_sse

STREAMS = 3
"""``relay.maxEventStreams`` of the guarded gateway."""


class Listener:
    """An SSE client reading ``/v1/events`` on a thread; events land in ``events`` (a queue)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, **params: str) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=30.0))
        # A keepalive each second: the reading thread sees close() at the next line, not 15 s later.
        self._args = (url, headers or {}, {"heartbeat": "1", **params})
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.connected.wait(30), "the event stream did not open"

    def _lines(self, response: httpx.Response) -> Iterator[str]:
        for line in response.iter_lines():
            if line.startswith(":"):
                self.connected.set()
            if self._stop.is_set():
                return
            yield line

    def _run(self) -> None:
        url, headers, params = self._args
        try:
            with self._client.stream("GET", url, headers=headers, params=params) as response:
                if response.status_code != 200:
                    response.read()
                    self.events.put({"type": "http-error", "status": response.status_code, "body": response.text})
                    self.connected.set()
                    return
                for event in parse_sse(self._lines(response)):
                    self.events.put(event)
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self.connected.set()

    def until(self, predicate: Any, timeout: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The first event matching ``predicate`` within ``timeout`` s, and every event seen before it."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(event)
            if predicate(event):
                return event, seen
        raise AssertionError(f"no matching event within {timeout}s; saw {[e.get('type') for e in seen]}")

    def drain(self, seconds: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                out.append(self.events.get(timeout=0.05))
            except queue.Empty:
                continue
        return out

    def close(self) -> None:
        self._stop.set()
        self._client.close()
        self._thread.join(timeout=10)


TICKER = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Function", "metadata": {"name": "ticker"},
    "spec": {"entrypoint": "mnemos.cortex.testing:ticker", "parameters": {
        "type": "object", "additionalProperties": False, "properties": {
            "count": {"type": "integer"}, "interval": {"type": "number"}, "text": {"type": "string"}}}}}  # fmt: skip


def _policy(name: str, rps: int) -> dict[str, Any]:
    return {
        "apiVersion": "genome.mnemos.dev/v1",
        "kind": "Policy",
        "metadata": {"name": name},
        # one principal only: the registry is shared with the limits tests of this session
        "spec": {"rateLimit": {"requestsPerSecond": rps, "burst": rps, "principals": ["events-tests"]}},
    }


def test_a_resource_applied_by_one_client_reaches_a_subscriber_within_2s(relay: Relay) -> None:
    listener = Listener(f"{relay.url}/v1/events", types="resource")
    try:
        started = time.monotonic()
        relay.client.apply(_policy("events-live", 5))
        event, _ = listener.until(lambda e: e.get("subject") == "Policy/events-live", timeout=2.0)
        assert time.monotonic() - started < 2.0
        assert event["type"] == "resource.created"
        assert event["data"]["generation"] == 1 and isinstance(event["id"], int)
    finally:
        listener.close()


def test_a_reconnect_with_last_event_id_misses_nothing(relay: Relay) -> None:
    first = Listener(f"{relay.url}/v1/events", types="resource")
    relay.client.apply(_policy("events-resume", 1))
    mark, _ = first.until(lambda e: e.get("subject") == "Policy/events-resume", timeout=10)
    first.close()
    for rps in range(2, 7):  # five changes while nobody listens
        relay.client.apply(_policy("events-resume", rps))
    second = Listener(f"{relay.url}/v1/events", {"Last-Event-ID": str(mark["id"])}, types="resource")
    try:
        _, seen = second.until(lambda e: e.get("data", {}).get("generation") == 6, timeout=10)
        mine = [e for e in seen if e.get("subject") == "Policy/events-resume"]
        assert [e["data"]["generation"] for e in mine] == [2, 3, 4, 5, 6]
        ids = [e["id"] for e in seen]
        assert ids == sorted(ids) and ids[0] > mark["id"]
    finally:
        second.close()
    # An id older than anything the bus holds is answered with an explicit reset, then the buffer.
    old = Listener(f"{relay.url}/v1/events", {"Last-Event-ID": "1"}, types="resource")
    try:
        event, _ = old.until(lambda e: e.get("type") == "reset", timeout=10)
        assert "older than the buffer" in event["data"]["reason"]
    finally:
        old.close()
    # One past every event (another platform's, or from before the bus restarted) is said to be so.
    ahead = Listener(f"{relay.url}/v1/events", {"Last-Event-ID": "9" * 18}, types="resource")  # ids: ~1.8e15
    try:
        event, _ = ahead.until(lambda e: e.get("type") == "reset", timeout=10)
        assert event["data"]["reason"] == "Last-Event-ID is not an id of this event stream", event
    finally:
        ahead.close()


def test_each_event_matches_the_event_schema_the_openapi_document_publishes(relay: Relay) -> None:
    """``/openapi.json`` describes one event of the stream (its ``event``, ``id`` and ``data``
    fields, ``data`` a JSON object), as OpenAPI documents an event stream before 3.2: a reset and a
    resource event read as a client parses them validate against it. It said ``{"type":
    "string"}``, which Schemathesis found no event matches."""
    import json

    from jsonschema import Draft202012Validator

    published = httpx.get(f"{relay.url}/openapi.json").json()["paths"]["/v1/events"]["get"]["responses"]["200"]
    validator = Draft202012Validator(published["content"]["text/event-stream"]["schema"])
    relay.client.apply(_policy("events-schema", 1))
    with httpx.stream("GET", f"{relay.url}/v1/events", params={"types": "resource", "heartbeat": "1"},
                      headers={"Last-Event-ID": "1"}, timeout=30) as response:  # fmt: skip
        frames = _frames(response, lambda f: f.get("event") is None and "events-schema" in f.get("data", ""))
    assert frames[0]["event"] == "reset", frames[0]
    for frame in frames:
        assert not list(validator.iter_errors(frame)), frame
        assert isinstance(json.loads(frame["data"]), dict)


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of the gateway; ``cut()`` drops every open connection."""

    def __init__(self, port: int) -> None:
        import socket

        self._upstream = port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.accepted = 0
        self._open: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
            self.accepted += 1
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: Any, dst: Any) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.close()

    def cut(self) -> None:
        import socket

        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._open.clear()

    def close(self) -> None:
        self.cut()
        self._server.close()


def test_the_remote_client_watches_and_resumes_after_a_cut_connection(relay: Relay) -> None:
    from mnemos.remote import RemoteClient

    proxy = CuttingProxy(relay.port)
    remote = RemoteClient(f"http://127.0.0.1:{proxy.port}", api_key="unused")  # authentication is off here
    seen: queue.Queue[dict[str, Any]] = queue.Queue()

    def consume() -> None:
        for event in remote.watch(["resource"], timeout=90):
            if event.get("subject") == "Policy/events-remote":
                seen.put(event)
                if event["data"]["generation"] == 5:
                    return

    reader = threading.Thread(target=consume, daemon=True)
    try:
        start = remote.position()  # where the stream is now: a watch from here misses nothing
        assert isinstance(start, int)
        reader.start()
        relay.client.apply(_policy("events-remote", 1))
        assert seen.get(timeout=30)["data"]["generation"] == 1
        proxy.cut()  # the watch's connection drops; it reconnects with Last-Event-ID
        for rps in range(2, 6):
            relay.client.apply(_policy("events-remote", rps))
        got = [seen.get(timeout=30)["data"]["generation"] for _ in range(4)]
        assert got == [2, 3, 4, 5]  # nothing missed, nothing twice
        assert proxy.accepted >= 3  # position(), the first stream, and the reconnect
        replay = [e["data"]["generation"] for e in remote.watch(["resource"], after=start, timeout=3)
                  if e.get("subject") == "Policy/events-remote"]  # fmt: skip
        assert replay == [1, 2, 3, 4, 5]
    finally:
        reader.join(timeout=30)
        remote.close()
        proxy.close()


def test_bad_parameters_are_422_naming_the_field(relay: Relay) -> None:
    for bad in ("abc", "9" * 5000):  # int() of 5,000 digits raised: a 500
        response = httpx.get(f"{relay.url}/v1/events", headers={"Last-Event-ID": bad}, timeout=10)
        assert_openai_error(response, 422, param="Last-Event-ID")
    for types, family in (("secrets", "secrets"), ("job,JOB", "JOB"), ("job.log, nope.x", "nope")):
        response = httpx.get(f"{relay.url}/v1/events", params={"types": types}, timeout=10)
        error = assert_openai_error(response, 422, param="types")
        assert error["message"] == (f"types: unknown event family {family!r}: use job, model, resource, run, or "
                                    "one type of them (job.log)"), error  # the family, not a regex


def test_model_status_changes_are_published(relay: Relay) -> None:
    listener = Listener(f"{relay.url}/v1/events", types="model")
    try:
        relay.apply(model_doc("events-model"))
        event, _ = listener.until(
            lambda e: e.get("subject") == "model/events-model" and e["data"].get("status") == "ready", timeout=120
        )
        assert event["data"]["generation"] == 1 and event["data"]["engine"]
    finally:
        listener.close()
        relay.delete("Model", "events-model")


# -- filtering by caller, with authentication on ----------------------------------------------------


@pytest.fixture(scope="module")
def guarded(relay: Relay, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The events and jobs routes behind the real edge (auth on), served by uvicorn on 127.0.0.1,
    over the session's CORTEX; API keys for two developers and a viewer."""
    from fastapi import FastAPI

    from mnemos.config import load_settings
    from mnemos.cortex.http import build_router as jobs_router
    from mnemos.engram import Engram
    from mnemos.genome import Registry, parse_resource
    from mnemos.relay._edge import EdgeMiddleware, EdgeSeam
    from mnemos.relay._errors import install_error_handlers
    from mnemos.relay.event_stream import build_router as events_router
    from mnemos.soul import IdentityStore

    relay.client.component("cortex")
    root: Path = tmp_path_factory.mktemp("events-auth")
    settings = load_settings(engram={"uri": str(root / "engram")}, relay={"auth": True})
    engram = Engram.from_settings(settings)
    seam = EdgeSeam(settings, engram)
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(EdgeMiddleware, seam=seam)

    async def admit(request: Request) -> Any:
        return await seam.admit(request, "read-artifacts" if request.method == "GET" else "submit")

    Registry(engram).apply(parse_resource(TICKER))
    app.include_router(jobs_router(auth=admit, settings=settings))
    app.include_router(events_router(seam.admit, max_streams=STREAMS))
    seam.install_routes(app)  # the guard in app.state.soul_guard, as the gateway has it: streams re-check with it
    store = IdentityStore.from_settings(settings, engram)
    keys = {name: store.create_api_key(name, role).secret
            for name, role in (("alice", "developer"), ("bob", "developer"), ("vera", "viewer"))}  # fmt: skip
    with serving(app, lifespan="off") as url:
        yield {"url": url, "keys": keys, "store": store}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _ticker(guarded: dict[str, Any], key: str, text: str) -> str:
    """The id of a ``ticker`` job submitted with ``key`` that prints ``text`` twice."""
    body = {"function": "ticker", "kwargs": {"count": 2, "interval": 0.1, "text": text}}
    submitted = httpx.post(f"{guarded['url']}/v1/jobs", headers=_auth(key), json=body, timeout=30)
    assert submitted.status_code == 200, submitted.text
    return str(submitted.json()["id"])


def test_the_stream_authenticates_before_streaming(guarded: dict[str, Any]) -> None:
    response = httpx.get(f"{guarded['url']}/v1/events", timeout=10)
    assert_openai_error(response, 401, type_="authentication_error")
    response = httpx.get(f"{guarded['url']}/v1/events", headers=_auth("mk_forged_key"), timeout=10)
    assert response.status_code == 401


def test_a_developer_does_not_receive_another_developers_job_logs(guarded: dict[str, Any]) -> None:
    url, keys = f"{guarded['url']}/v1/events", guarded["keys"]
    alice = Listener(url, _auth(keys["alice"]), types="job")
    bob = Listener(url, _auth(keys["bob"]), types="job")
    vera = Listener(url, _auth(keys["vera"]), types="job")
    try:
        job = _ticker(guarded, keys["alice"], "alice-secret-line")
        line, _ = alice.until(lambda e: e.get("type") == "job.log" and e["subject"] == f"job:{job}", timeout=60)
        assert "alice-secret-line" in line["data"]["line"] and line["owner"] == "alice"
        _, seen = alice.until(lambda e: e.get("type") == "job.succeeded" and e["subject"] == f"job:{job}", timeout=60)
        # An event's type is the state its data shows (a start journaled after the job had finished
        # in memory was once announced as job.failed with the running job's fields).
        states = [e for e in seen if e.get("type", "").startswith("job.") and e["type"] != "job.log"]
        assert states and all(e["type"] == f"job.{e['data']['status']}" for e in states), states
        vera.until(lambda e: e.get("type") == "job.succeeded" and e["subject"] == f"job:{job}", timeout=10)
        # Bob and the viewer had every chance: nothing of Alice's output reached them.
        for other in (bob, vera):
            leaked = [e for e in other.drain(1.0) if "alice-secret-line" in str(e) or e.get("type") == "job.log"]
            assert not leaked
        assert all(e.get("owner") != "alice" for e in bob.drain(0.1))
    finally:
        for listener in (alice, bob, vera):
            listener.close()


def test_a_key_scoped_without_execute_gets_no_log_lines_of_anothers_job(guarded: dict[str, Any]) -> None:
    """A read-only operator key (``--role operator --scope read-artifacts --scope read-lineage``) is
    refused another's job logs by ``GET /v1/jobs/{id}/logs`` (403) but was sent every line of them on
    the stream. It now gets the jobs' states only, as the route answers; an unscoped operator keeps
    the lines."""
    url, keys, store = f"{guarded['url']}/v1/events", guarded["keys"], guarded["store"]
    scoped = store.create_api_key("ro-op", "operator", scopes=("read-artifacts", "read-lineage")).secret
    full = store.create_api_key("ops", "operator").secret
    reader, operator = Listener(url, _auth(scoped), types="job"), Listener(url, _auth(full), types="job")
    try:
        job = _ticker(guarded, keys["bob"], "bob-private-line")
        line, _ = operator.until(lambda e: e.get("type") == "job.log" and e["subject"] == f"job:{job}", timeout=60)
        assert "bob-private-line" in line["data"]["line"]
        _, seen = reader.until(lambda e: e.get("type") == "job.succeeded" and e["subject"] == f"job:{job}", timeout=60)
        leaked = [e for e in [*seen, *reader.drain(1.0)] if e.get("type") == "job.log" or "bob-private-line" in str(e)]
        assert not leaked, leaked
        logs = httpx.get(f"{guarded['url']}/v1/jobs/{job}/logs", headers=_auth(scoped), timeout=30)
        assert logs.status_code == 403, logs.text  # the route's answer, which the stream now matches
    finally:
        reader.close()
        operator.close()


def test_a_caller_holds_a_bounded_number_of_streams(guarded: dict[str, Any]) -> None:
    """Each event costs the replica work per open stream: a developer's key opening streams without
    end would slow every caller's. Past ``relay.maxEventStreams`` it gets a 429 naming the setting;
    another caller is not affected, and a closed stream frees its place."""
    url, keys = f"{guarded['url']}/v1/events", guarded["keys"]
    held = [Listener(url, _auth(keys["alice"])) for _ in range(STREAMS)]
    others: list[Listener] = []
    try:
        refused = httpx.get(url, headers=_auth(keys["alice"]), timeout=10)
        error = assert_openai_error(refused, 429, type_="rate_limit_error")
        assert "relay.maxEventStreams" in error["message"] and refused.headers["retry-after"] == "5"
        others.append(Listener(url, _auth(keys["bob"])))  # per caller: Bob still gets his
        held.pop().close()
        others.append(wait_until(lambda: _opened(url, keys["alice"]), timeout=30))  # its place is free again
    finally:
        for listener in held + others:
            listener.close()


def _opened(url: str, key: str) -> Listener | None:
    listener = Listener(url, _auth(key))
    with contextlib.suppress(queue.Empty):
        if listener.events.get(timeout=0.5).get("type") == "http-error":
            listener.close()
            return None
    return listener


def test_a_client_that_goes_away_ends_its_stream_quietly() -> None:
    """Ray Serve's ``receive`` raises when the request is cancelled (the client left): the event
    stream treats that as the disconnect it is, instead of a server error with a traceback."""
    import asyncio

    from ray.exceptions import TaskCancelledError

    from mnemos.relay.event_stream import _EventStreamResponse

    closed = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def body() -> Any:
        try:
            yield b": connected\n\n"
            await asyncio.sleep(3600)
        finally:
            closed.set()

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        raise TaskCancelledError()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        response = _EventStreamResponse(body(), media_type="text/event-stream")
        await asyncio.wait_for(response({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send), 10)

    asyncio.run(main())
    assert closed.is_set() and sent[0]["status"] == 200


# -- parameters checked, ids that only grow, slow readers, revoked keys ----------------------------


def test_unknown_parameters_and_types_are_422_naming_them(relay: Relay) -> None:
    """``/v1/jobs`` refuses a parameter it does not take; ``/v1/events`` answered ``?foo=1`` with a
    stream, and ``types=job.nope`` with one that never matched."""
    url = f"{relay.url}/v1/events"
    error = assert_openai_error(_opened_status(url, params={"foo": "1", "heartbeat": "1"}), 422, param="foo")
    assert error["message"].startswith("foo: not a query parameter of this route"), error
    assert "types, subject, last_event_id, heartbeat" in error["message"], error
    assert_openai_error(_opened_status(f"{url}?types=job&types=run&heartbeat=1"), 422, param="types")  # given twice
    error = assert_openai_error(_opened_status(url, params={"types": "resource,job.nope", "heartbeat": "1"}), 422,
                                param="types")  # fmt: skip
    assert "'job.nope'" in error["message"] and "job.log" in error["message"] and "job.succeeded" in error["message"]
    with httpx.stream("GET", url, params={"types": "job.log,run.succeeded,model.status", "heartbeat": "1"},
                      timeout=10) as ok:  # fmt: skip
        assert ok.status_code == 200


def _opened_status(url: str, **kwargs: Any) -> httpx.Response:
    """The answer to ``GET url``; its body is read only when it is not a stream (which never ends)."""
    with httpx.stream("GET", url, timeout=10, **kwargs) as response:
        if response.status_code != 200:
            response.read()
        return response


def _frames(response: httpx.Response | Iterator[str], stop: Any, timeout: float = 20.0) -> list[dict[str, str]]:
    """The frames of an SSE response (their fields; or of its ``iter_lines()``, to read on later),
    until ``stop(frame)`` or the stream's end, within ``timeout`` s (the stream's keepalives, every
    second, let the deadline be checked)."""
    frames: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    for line in response.iter_lines() if isinstance(response, httpx.Response) else response:
        assert time.monotonic() < deadline, f"the stream went on past {timeout}s: {frames[-3:]}"
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if fields:
            frames.append(fields)
            if stop(fields):
                break
        fields = {}
    return frames


def test_ids_only_grow_across_a_reset_and_its_replay(relay: Relay) -> None:
    """``event: reset`` carried the newest id, then the replay started at older ones: a client that
    disconnected after the reset resumed past the whole replay. It now carries the id the replay
    starts after, and resuming from it replays the same events."""
    for rps in (1, 2):
        relay.client.apply(_policy("events-order", rps))
    mine = lambda f: "data" in f and "events-order" in f["data"] and '"generation":2' in f["data"]  # noqa: E731
    with httpx.stream("GET", f"{relay.url}/v1/events", params={"types": "resource", "heartbeat": "1"},
                      headers={"Last-Event-ID": "1"}, timeout=30) as response:  # fmt: skip
        frames = _frames(response, mine)
    assert frames[0]["event"] == "reset" and len(frames) >= 3, frames[:3]
    ids = [int(f["id"]) for f in frames]
    assert ids == sorted(set(ids)), ids  # strictly growing, the reset's id first
    with httpx.stream("GET", f"{relay.url}/v1/events", params={"types": "resource", "heartbeat": "1"},
                      headers={"Last-Event-ID": frames[0]["id"]}, timeout=30) as response:  # fmt: skip
        again = _frames(response, mine)
    assert "event" not in again[0] and again[0]["id"] == frames[1]["id"], (again[:2], frames[:2])


@pytest.fixture(scope="module")
def narrow(relay: Relay) -> Iterator[str]:
    """``/v1/events`` over the session's bus with a hub whose connections may lag 4 events, one
    stream per caller (authentication off), served by uvicorn on 127.0.0.1."""
    from fastapi import FastAPI

    from mnemos.relay._errors import install_error_handlers
    from mnemos.relay.event_stream import EventHub, build_router
    from mnemos.trace.events import bus

    async def admit(request: Request, verb: str) -> None:
        return None

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(admit, EventHub(bus, queue_max=4), max_streams=1))
    with serving(app, lifespan="off") as url:
        yield f"{url}/v1/events"


def test_a_reader_that_falls_behind_is_told_dropped_and_its_stream_ends(narrow: str) -> None:
    """A reader whose queue overflowed was cut off silently: the ``dropped`` marker went into the
    full queue and was lost, and the stream sent keepalives forever, holding one of the caller's
    streams. Now it is sent ``event: dropped`` (with the id to resume from) and the stream ends;
    the caller's place is free again."""
    import ray

    from mnemos.trace.events import bus

    params = {"types": "resource", "heartbeat": "1"}
    batch = [{"type": "resource.configured", "subject": f"Policy/events-dropped-{i}", "owner": None,
              "ts": time.time(), "data": {"kind": "Policy", "name": f"events-dropped-{i}", "generation": 1,
                                          "action": "configured"}} for i in range(-1, 20)]  # fmt: skip
    with httpx.stream("GET", narrow, params=params, timeout=httpx.Timeout(10.0, read=5.0)) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = ray.get(bus().publish.remote(batch[:1]))
        live = _frames(lines, lambda f: f.get("id") == str(first), timeout=10)  # the stream reads the live feed
        # Not reading: 20 events arrive at once, past the 4 the connection may lag.
        last = ray.get(bus().publish.remote(batch[1:]))
        time.sleep(0.5)
        frames = live + _frames(lines, lambda f: False, timeout=5)  # to the end of the stream
    assert frames[-1]["event"] == "dropped", frames
    assert "fell behind" in frames[-1]["data"] and int(frames[-1]["id"]) < last
    # Its place is free (one stream per caller here), and the hub serves the new one.
    with httpx.stream("GET", narrow, params=params, headers={"Last-Event-ID": frames[-1]["id"]},
                      timeout=httpx.Timeout(10.0, read=5.0)) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        resumed = _frames(response, lambda f: f.get("data", "").count("events-dropped-19") > 0)
    names = [f["data"].split('"subject":"Policy/')[1].split('"')[0] for f in resumed if "events-dropped" in f["data"]]
    assert names[-1] == "events-dropped-19" and all(n.startswith("events-dropped-") for n in names)


def test_a_stream_ends_when_its_key_is_revoked_or_expires(guarded: dict[str, Any]) -> None:
    """A stream authenticated once at open: a revoked (or expired) viewer key kept watching every
    job's state. It re-checks its credential every second; the next check after the gateway sees
    the revocation ends it with ``event: revoked``, and a new stream is refused."""
    url, store = f"{guarded['url']}/v1/events", guarded["store"]
    key = store.create_api_key("rita", "viewer")
    short = store.create_api_key("ruth", "viewer", ttl=2.0)
    listener = Listener(url, _auth(key.secret), types="job")
    expiring = Listener(url, _auth(short.secret), types="job")
    try:
        time.sleep(0.5)
        store.revoke(key.id)
        started = time.monotonic()
        event, _ = listener.until(lambda e: e.get("type") in ("revoked", "http-error"), timeout=10)
        assert event["type"] == "revoked" and "revoked" in event["data"]["reason"], event
        assert time.monotonic() - started < 5
        listener._thread.join(timeout=5)
        assert not listener._thread.is_alive()  # the stream ended
        assert httpx.get(url, headers=_auth(key.secret), timeout=10).status_code == 401
        event, _ = expiring.until(lambda e: e.get("type") in ("revoked", "http-error"), timeout=10)
        assert event["type"] == "revoked" and "expired" in event["data"]["reason"], event
    finally:
        listener.close()
        expiring.close()
