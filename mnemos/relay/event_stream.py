"""``GET /v1/events``: the platform's event stream as Server-Sent Events, filtered per caller.

    GET /v1/events?types=job,resource&subject=job:j-1
    Last-Event-ID: 1765432100000042        (or ?last_event_id=…; EventSource sends it on reconnect)

Each event is ``id: <n>`` + ``data: <json>`` (see ``mnemos.trace.events``); ids only grow along
a stream. Control events (``event: <name>``, ``data: {"reason": …}``):

- ``reset``: the id to resume from is older than the bus's ring, or from before a bus restart:
  events may have been missed, re-list. Its ``id`` is the one the replay that follows starts
  after (never the newest), so a client that reconnects right after it misses nothing of it.
- ``dropped``: this connection fell more than ``QUEUE_MAX`` events behind; it is sent as soon as
  the stream can send again, then the stream ends (reconnect with ``Last-Event-ID`` to resume).
  The hub stops feeding it at once and it no longer counts against ``relay.maxEventStreams``.
- ``revoked``: the credential the stream was opened with has been revoked or has expired; the
  stream ends (a reconnect gets 401). Each stream re-checks its credential every ``RECHECK_S``
  seconds (the guard's own check, ``EdgeGuard.authenticate``, over the revocation list it
  re-reads every second: no work per event), so it ends within a few seconds of the revocation.

A comment line (``: keepalive``) is sent every ``heartbeat`` seconds of silence, in a frame with
``id: <n>``, the stream's position (the last event it passed, sent to this caller or not): a
filtered stream that sent nothing while the bus moved on resumes from there, not from an id the
bus no longer holds (a spurious ``reset``). A stream opened
without ``Last-Event-ID`` starts with ``id: <n>`` + ``: connected`` (no data): the position it
streams from, taken before the response's headers are sent (every event published once the client
has its 200 reaches it), so a client that reconnects before its first event still resumes without
a gap.
A client that goes away ends its stream quietly (no error is logged for a disconnect).

Query parameters are checked, never ignored: one the route does not take, or one given twice, is
a 422 naming it; ``types`` names families (``job``) or exact types of ``EVENT_TYPES``
(``job.log``), anything else is a 422 listing the known ones; an empty ``subject`` (or one with
spaces around it, which no event has) is a 422 naming it.

The caller is authenticated before anything streams (verb ``read-artifacts``). What it then
receives is decided per event by :func:`visible`: resources and model status for every reader;
jobs and runs by ownership — admins and operators see all (another's log lines only with the
verb ``execute``, as ``GET /v1/jobs/{id}/logs`` answers), a developer only their own, a viewer the
states (never the log lines) — deny by default for anything else. :func:`for_reader` then
withholds the data of a job or run the caller does not read (its owner, operators and admins do):
a viewer's ``job.*`` events carry no error text, its ``run.*`` events no step error texts, as
``GET /v1/jobs/{id}`` and ``GET /v1/runs/{id}`` answer it.

The web console reads the same stream at ``/ui/events`` (:func:`alias`: this handler, its
authentication and filtering), so that its session cookie need never be sent to ``/v1``.

One ``EventHub`` per gateway replica long-polls the bus and fans out to bounded per-connection
queues, so the bus sees one reader per replica however many clients are connected. Every event
costs the replica work per open stream, so a principal holds at most ``relay.maxEventStreams``
(32) of them on one replica: one more is a 429 until one closes; and all callers together at most
``relay.maxEventStreamsTotal`` (128, half the replica's concurrent requests, so that a few keys'
streams cannot take the places chat needs): one more is a 503. A stream takes its place when its
request is admitted (before anything is awaited), so requests sent together cannot all pass the
count, and gives it back when it ends, is dropped, or its response ends without streaming.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from starlette.types import Message, Receive, Scope, Send

from mnemos._http import check_query
from mnemos._model import dump_json
from mnemos.cortex.http import withhold_job
from mnemos.cortex.job import STATUSES as JOB_STATUSES
from mnemos.errors import AuthenticationError, RateLimitError, UnavailableError, ValidationError
from mnemos.relay._edge import VERB_KEY
from mnemos.relay._errors import pattern_hint
from mnemos.relay._responses import SSE_HEADERS
from mnemos.soul.ownership import reads_data
from mnemos.synkron.http import withhold_run
from mnemos.trace.events import matches

__all__ = ["EVENT_TYPES", "PATH", "QUEUE_MAX", "RECHECK_S", "EventHub", "alias", "build_router", "for_reader",
           "visible"]

logger = logging.getLogger("mnemos.relay")

PATH = "/v1/events"
QUEUE_MAX = 2000
"""Events a connection may lag behind the live feed before it is dropped."""
RECHECK_S = 1.0
"""How often an open stream re-checks its credential (revoked, expired)."""
HEARTBEAT_S = 15.0
_POLL_S = 15.0
_RESET_REASONS = {
    "restarted": "the event bus restarted; events may be missed",
    "dropped": "a burst of events left the bus before this gateway read them; events may be missed",
}
_PARAMS = ("types", "subject", "last_event_id", "heartbeat")
_SUBJECT = r"^[^\x00-\x20\x7f]([^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?$"
"""A subject as events carry one: no control character, no space at either end (explicit classes:
Python's and JSON Schema's whitespace class and ``.`` differ)."""
_ALL_JOBS_ROLES = frozenset({"admin", "operator"})
_FAMILIES = frozenset({"resource", "model", "job", "run"})
_RUN_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")  # SYNKRON's run states
EVENT_TYPES: frozenset[str] = frozenset({
    *(f"resource.{action}" for action in ("created", "configured", "deleted")), "model.status", "job.log",
    *(f"job.{status}" for status in JOB_STATUSES), *(f"run.{status}" for status in _RUN_STATUSES)})  # fmt: skip
"""The exact types ``types`` may name (``mnemos.trace.events``); a family names all of its own."""
# What the validators below accept, published in /openapi.json.
_TYPE = "(" + "|".join(re.escape(t) for t in sorted(_FAMILIES | EVENT_TYPES)) + ")?"
_TYPES = rf"^\s*{_TYPE}\s*(,\s*{_TYPE}\s*)*$"
_EVENT_ID = r"^\s*[0-9]*\s*$"
pattern_hint(_EVENT_ID, "the integer id of an event received before")  # (not the expression's text)
_SSE_EVENT = {"type": "object", "properties": {
    "event": {"type": "string", "description": "Absent for an event; reset, dropped or revoked for a control event."},
    "id": {"type": "string", "pattern": "^[0-9]+$"},
    "data": {"type": "string", "contentMediaType": "application/json", "description": "The event as a JSON object."}}}
"""One event of the stream, as OpenAPI documents an event stream (before 3.2's ``itemSchema``)."""
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "Server-Sent Events", "content": {"text/event-stream": {"schema": _SSE_EVENT}}},
    422: {"description": "types, last_event_id or heartbeat is malformed, or a query parameter is unknown or repeated"},
}


def visible(event: dict[str, Any], principal: Any) -> bool:
    """Whether ``principal`` may receive ``event`` (``None``: authentication is off, all events)."""
    if principal is None:
        return True
    family = str(event.get("type", "")).split(".", 1)[0]
    if family not in _FAMILIES:
        return False
    role = getattr(principal, "role", "")
    scopes = getattr(principal, "scopes", ()) or ()
    if scopes and "read-artifacts" not in scopes:
        return False
    if family in ("resource", "model"):
        return role in ("admin", "operator", "developer", "viewer")
    if role in _ALL_JOBS_ROLES:  # every job's state; another's log lines only with execute (as GET /v1/jobs/{id}/logs)
        return event.get("type") != "job.log" or reads_data(principal, event.get("owner"))
    if role == "developer":
        return bool(event.get("owner")) and event.get("owner") == getattr(principal, "subject", None)
    if role == "viewer":
        return event.get("type") != "job.log"
    return False


def for_reader(event: dict[str, Any], principal: Any) -> dict[str, Any]:
    """``event`` as ``principal`` may read it (once :func:`visible`): a job's or run's data withheld
    unless the principal reads it (``mnemos.soul.ownership.reads_data``)."""
    family = str(event.get("type", "")).split(".", 1)[0]
    data = event.get("data")
    if family not in ("job", "run") or not isinstance(data, dict) or reads_data(principal, event.get("owner")):
        return event
    return {**event, "data": withhold_job(data) if family == "job" else withhold_run(data)}


def _frame(event: dict[str, Any]) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (event["id"], dump_json(event))


def _control(name: str, ident: int | None, data: dict[str, Any]) -> bytes:
    head = f"event: {name}\n" + (f"id: {ident}\n" if ident is not None else "")
    return head.encode() + b"data: " + dump_json(data) + b"\n\n"


class _Place:
    """One of a principal's ``relay.maxEventStreams`` places, taken when its request is admitted
    (``EventHub.take``) and given back once (``release``): when its stream ends, is dropped, or its
    response ends without ever streaming (the client left before the first byte)."""

    def __init__(self, counts: collections.Counter[str], holder: str) -> None:
        self._counts = counts
        self.holder: str | None = holder
        """The principal whose stream count this place holds (``None`` once released)."""
        counts[holder] += 1

    def release(self) -> None:
        holder, self.holder = self.holder, None
        if holder is not None:
            self._counts[holder] -= 1
            if self._counts[holder] <= 0:
                del self._counts[holder]


class _Subscription:
    def __init__(self, start: int | None, queue_max: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_max)
        self.dropped = False
        """Set by the pump when ``queue`` overflowed: it is fed no more; the stream says so and ends."""
        self.start = start
        """Every event with a higher id reaches ``queue`` (the pump's position when it subscribed)."""
        self.place: _Place | None = None
        """The place among its principal's streams this subscription holds."""


class _EventStreamResponse(StreamingResponse):
    """A streaming response that ends quietly when the client goes away.

    Ray Serve's ``receive`` raises (``TaskCancelledError``) instead of answering
    ``http.disconnect`` when the request is cancelled because the client left; Starlette's
    disconnect listener would let that escape as a server error. Here it is the disconnect it means.
    """

    def __init__(self, *args: Any, place: _Place | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._place = place

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_or_disconnect() -> Message:
            try:
                return await receive()
            except Exception:  # noqa: BLE001 - the transport failed: the client is gone
                return {"type": "http.disconnect"}

        try:
            await super().__call__(scope, receive_or_disconnect, send)
        finally:  # a stream that never started gives its place back too
            if self._place is not None:
                self._place.release()


def _cancelled(exc: BaseException) -> bool:
    """Whether a bus read failed only because Ray cancelled it (with the request it was issued under)."""
    from ray.exceptions import TaskCancelledError

    return isinstance(exc, TaskCancelledError)


class EventHub:
    """The bus's live feed, fanned out to the connections of one gateway replica.

    Args:
        bus: returns the ``events`` actor handle (``mnemos.trace.events.bus``).
        queue_max: events a connection may lag behind before it is dropped.
    """

    def __init__(self, bus: Callable[[], Any], *, queue_max: int = QUEUE_MAX) -> None:
        self._bus_factory = bus
        self.queue_max = queue_max
        self._bus: Any = None
        self._subs: set[_Subscription] = set()
        self._open: collections.Counter[str] = collections.Counter()
        """Open streams per principal (their subject)."""
        self._after: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def bus(self) -> Any:
        if self._bus is None:
            self._bus = self._bus_factory()
        return self._bus

    async def subscribe(self) -> _Subscription:
        """A new connection's queue; the pump is running (and past its start id) on return."""
        async with self._lock:
            if self._task is None or self._task.done():
                self._after = await self.bus.last.remote()
                # A fresh context: the pump belongs to the replica, not to the request that started it
                # (Ray tracks the calling task in a context variable and cancels its reads with it).
                self._task = asyncio.get_running_loop().create_task(self._pump(), context=contextvars.Context())
        sub = _Subscription(self._after, self.queue_max)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: _Subscription) -> None:
        self._subs.discard(sub)
        if sub.place is not None:
            sub.place.release()

    def take(self, principal: Any, most: int, total: int | None = None) -> _Place | None:
        """One of ``principal``'s ``most`` places, taken now, before anything is awaited (so that
        streams opened at once cannot all pass the count); ``None`` when every place is held.

        Raises:
            UnavailableError: ``total`` streams of all callers are open on this replica already.
        """
        if total is not None and sum(self._open.values()) >= total:
            raise UnavailableError(f"{total} event streams are open on this gateway replica "
                                   "(relay.maxEventStreamsTotal), the most it holds beside other requests; "
                                   "retry later", retry_after=5, param="events")  # fmt: skip
        holder = _holder(principal)
        return _Place(self._open, holder) if self._open[holder] < most else None

    def open_streams(self, principal: Any) -> int:
        """How many streams ``principal`` has open (or admitted and about to open) on this replica."""
        return self._open[_holder(principal)]

    async def _pump(self) -> None:
        while True:
            try:
                answer = await self.bus.read.remote(self._after, _POLL_S, 1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the bus restarts; resume (readers get reset then)
                if _cancelled(exc):  # a read cancelled with a request: not a failure, read again
                    await asyncio.sleep(0.05)
                    continue
                logger.warning("events: reading the bus failed; retrying", exc_info=True)
                self._bus = None
                await asyncio.sleep(1.0)
                continue
            events = answer["events"]
            if answer["reset"]:  # the events that follow start after this id (not at the newest: ids only grow)
                events = [{"type": "reset", "id": events[0]["id"] - 1 if events else answer["last"],
                           "why": answer.get("why", "restarted")}, *events]  # fmt: skip
            self._after = answer["last"]
            for sub in list(self._subs):
                for event in events:
                    try:
                        sub.queue.put_nowait(event)
                    except asyncio.QueueFull:  # no marker: the queue is full; the stream reads ``dropped``
                        sub.dropped = True
                        self.unsubscribe(sub)  # fed no more, and no longer one of its holder's streams
                        break

    async def position(self) -> int:
        """The bus's newest id now: where a stream opened without ``Last-Event-ID`` starts."""
        try:
            return int(await self.bus.last.remote())
        except Exception as exc:  # noqa: BLE001 - the bus restarts; the client retries
            self._bus = None
            raise UnavailableError("events: the event bus is not answering; retry in a few seconds") from exc

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def stream(self, principal: Any, after: int | None, types: tuple[str, ...], subject: str | None,
                     heartbeat: float, refused: Callable[[], Awaitable[str | None]] | None = None,
                     place: _Place | None = None, fresh: bool = False) -> AsyncIterator[bytes]:  # fmt: skip
        """The SSE bytes of one connection (see the module docstring).

        Args:
            after: the id to resume after (``Last-Event-ID``); ``None``: from when it subscribes.
            fresh: ``after`` is not the client's but the bus's position when its request was
                admitted (``position``): announced as ``: connected``, then streamed from, so an
                event published once the client has its 200 is never missed.
            refused: called every ``RECHECK_S`` seconds: why the caller's credential no longer
                admits it (the stream then ends with ``event: revoked``), ``None`` while it does.
            place: the place among the principal's streams it holds (``take``; default: one taken now).
        """
        place = place or _Place(self._open, _holder(principal))
        try:
            sub = await self.subscribe()
        except BaseException:
            place.release()
            raise
        sub.place = place
        try:
            sent = after
            if fresh and after is not None:
                yield b"id: %d\n: connected\n\n" % after
            if after is not None:
                backlog = await self.bus.read.remote(after, 0.0, 100_000)
                if backlog["reset"]:  # an id past every event is no id of this bus (another, or before a restart)
                    if fresh:  # the position was this gateway's own, taken a moment ago
                        reason = _RESET_REASONS[backlog.get("why") or "dropped"]
                    elif after > backlog["last"]:
                        reason = "Last-Event-ID is not an id of this event stream"
                    else:
                        reason = "Last-Event-ID is older than the buffer"
                    # The id the replay starts after, so that ids only grow (a client resuming from it misses none).
                    start = backlog["events"][0]["id"] - 1 if backlog["events"] else backlog["last"]
                    yield _control("reset", start, {"reason": reason})
                for event in backlog["events"]:
                    if visible(event, principal) and matches(event, types, subject):
                        yield _frame(for_reader(event, principal))
                sent = backlog["last"]
            else:
                sent = sub.start
                yield b"id: %d\n: connected\n\n" % sent if sent is not None else b": connected\n\n"
            clock = asyncio.get_running_loop().time
            beat_at = clock() + heartbeat
            check_at = clock() + RECHECK_S if refused is not None else math.inf
            while True:
                if sub.dropped:
                    yield _control("dropped", sent, {"reason": "the client fell behind; reconnect with Last-Event-ID"})
                    return
                if refused is not None and clock() >= check_at:
                    reason = await refused()
                    if reason is not None:
                        yield _control("revoked", sent, {"reason": f"{reason}: this stream is closed"})
                        return
                    check_at = clock() + RECHECK_S
                if clock() >= beat_at:  # with the position: events skipped since the last one are not replayed
                    yield b"id: %d\n: keepalive\n\n" % sent if sent is not None else b": keepalive\n\n"
                    beat_at = clock() + heartbeat
                try:
                    event = sub.queue.get_nowait()
                except asyncio.QueueEmpty:
                    try:
                        event = await asyncio.wait_for(sub.queue.get(), max(0.01, min(beat_at, check_at) - clock()))
                    except asyncio.TimeoutError:
                        continue
                if event.get("type") == "reset":
                    yield _control("reset", event["id"], {"reason": _RESET_REASONS[event.get("why", "restarted")]})
                    sent = event["id"]
                    beat_at = clock() + heartbeat
                    continue
                if sent is not None and event["id"] <= sent:
                    continue
                sent = event["id"]
                if visible(event, principal) and matches(event, types, subject):
                    yield _frame(for_reader(event, principal))
                    beat_at = clock() + heartbeat
        finally:
            self.unsubscribe(sub)


def _holder(principal: Any) -> str:
    return str(getattr(principal, "subject", None) or "anonymous")


def _last_event_id(request: Request, query: str | None) -> int | None:
    header = request.headers.get("last-event-id")
    raw, name = (header, "Last-Event-ID") if header else (query, "last_event_id")  # the one that is read
    if raw is None or raw.strip() == "":
        return None
    if re.fullmatch(r"[0-9]{1,30}", raw.strip()) is None:  # ids have 17 digits; int() refuses 4,300+
        raise ValidationError(f"{name}: must be the integer id of an event received before", param=name)
    return int(raw)


def _credential_check(request: Request, principal: Any) -> Callable[[], Awaitable[str | None]] | None:
    """Why ``request``'s credential no longer admits it, asked again while its stream is open
    (``None`` when authentication is off: nothing to re-check).

    The app's ``EdgeGuard`` (``app.state.soul_guard``, where SOUL is installed) authenticates the
    request's ``Authorization`` again, as it did at open: a revoked credential (or one made from a
    revoked one: a console session of a revoked key), an expired one. Without a guard, the
    principal's ``expires_at`` is checked. A store that cannot be read keeps the stream open until
    a check can decide.
    """
    if principal is None or getattr(principal, "kind", "anonymous") == "anonymous":
        return None
    guard = getattr(request.app.state, "soul_guard", None)
    expires_at = getattr(principal, "expires_at", None)

    async def refused() -> str | None:
        if guard is None:
            return "the credential has expired" if expires_at is not None and time.time() >= expires_at else None
        try:
            await guard.authenticate(request)
        except AuthenticationError as exc:
            return exc.message
        except Exception:  # noqa: BLE001 - the store is unreachable (or busy): the next check decides
            logger.debug("events: re-checking a stream's credential failed", exc_info=True)
        return None

    return refused


def _types(types: str) -> tuple[str, ...]:
    """The families and exact types of ``?types=`` (422 naming ``types`` for any other)."""
    wanted = tuple(t.strip() for t in types.split(",") if t.strip())
    for t in wanted:
        family = t.split(".", 1)[0]
        if family not in _FAMILIES:
            raise ValidationError(f"types: unknown event family {family[:40]!r}: use {', '.join(sorted(_FAMILIES))}, "
                                  "or one type of them (job.log)", param="types")  # fmt: skip
        if t != family and t not in EVENT_TYPES:
            known = sorted(k for k in EVENT_TYPES if k.startswith(family + "."))
            raise ValidationError(f"types: unknown event type {t[:80]!r}: the {family} types are {', '.join(known)} "
                                  f"(or {family} for all of them)", param="types")  # fmt: skip
    return wanted


def build_router(admit: Callable[[Request, str], Any], hub: EventHub | None = None, *,
                 max_streams: int, max_total: int | None = None) -> APIRouter:  # fmt: skip
    """The ``/v1/events`` router.

    Args:
        admit: ``await admit(request, verb)`` returns the caller's principal (RELAY's edge seam).
        hub: the replica's hub (default: one over ``mnemos.trace.events.bus``).
        max_streams: open streams per principal (``relay.maxEventStreams``); one more is a 429.
        max_total: open streams of all principals (``relay.maxEventStreamsTotal``); one more is a 503.
    """
    from mnemos.trace.events import bus

    api = APIRouter(tags=["events"])
    hub = hub or EventHub(bus)

    @api.get(PATH, openapi_extra={VERB_KEY: "read-artifacts"}, response_class=StreamingResponse,
             responses=_STREAM_DOC)  # fmt: skip
    async def events(
        request: Request,
        types: str = Query("", json_schema_extra={"pattern": _TYPES},  # checked below, naming the family
                           description="Comma-separated families (resource, model, job, run), optionally "
                           "narrowed: job.log."),  # fmt: skip
        subject: str | None = Query(None, json_schema_extra={"pattern": _SUBJECT},  # checked below, naming it
                                    description="One subject, as events carry it: job:<id>, run:<id>, model/<name>."),
        last_event_id: str | None = Query(None, pattern=_EVENT_ID, description="Resume after this event id."),
        heartbeat: float = Query(HEARTBEAT_S, ge=1.0, le=300.0, allow_inf_nan=False,
                                 description="Seconds between keepalive comments."),
    ) -> StreamingResponse:
        """Server-Sent Events of resource changes, model status, job and run transitions and job logs."""
        principal = await admit(request, "read-artifacts")
        check_query(request, *_PARAMS)
        after = _last_event_id(request, last_event_id)
        wanted = _types(types)
        if subject is not None and not re.fullmatch(_SUBJECT, subject):  # it would match no event, ever
            raise ValidationError("subject: name one subject, as events carry it (job:<id>, run:<id>, model/<name>, "
                                  "Model/<name>), or leave it out for all", param="subject")  # fmt: skip
        if not 1.0 <= heartbeat <= 300.0:
            raise ValidationError("heartbeat: must be between 1 and 300 seconds", param="heartbeat")
        place = hub.take(principal, max_streams, max_total)  # taken now: a burst of requests cannot all pass the count
        if place is None:
            raise RateLimitError(f"{max_streams} event streams are open for this caller on this gateway replica "
                                 "(relay.maxEventStreams); close one first (a stream resumes where it left off "
                                 "with Last-Event-ID)", retry_after=5, param="events")  # fmt: skip
        fresh = after is None
        if fresh:  # fixed before the 200 is sent: an event published once the client has it is streamed
            try:
                after = await hub.position()
            except BaseException:
                place.release()
                raise
        return _EventStreamResponse(hub.stream(principal, after, wanted, subject, heartbeat,
                                               _credential_check(request, principal), place, fresh),
                                    media_type="text/event-stream", headers=SSE_HEADERS, place=place)  # fmt: skip

    return api


def alias(app: FastAPI, path: str) -> None:
    """Serve ``GET /v1/events`` (the handler :func:`build_router` added to ``app``, with its hub and
    stream limit) at ``path`` too, hidden from the schema."""
    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == PATH)
    app.add_api_route(path, route.endpoint, methods=["GET"], response_class=StreamingResponse,
                      include_in_schema=False)  # fmt: skip
