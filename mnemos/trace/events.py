"""The platform's event stream: one bus, fire-and-forget publishers, resumable readers.

Every component announces what changed with one call that never blocks and never raises::

    from mnemos.trace.events import publish
    publish("job.succeeded", "job:j-1a2b", owner="alice", queue="default")

Events travel in batches (a daemon thread per process, every ~50 ms) to ``EventBus``, the named,
detached, restartable actor ``events`` in namespace ``mnemos``. The bus numbers each event with a
monotonic integer id and keeps the last ``capacity`` events in a ring buffer. Ids start from the
bus's start time in microseconds, so they also grow across restarts of the bus: a reader that
resumes ``after`` an id is either given every later event or, when that id is older than the
ring (or from before a restart), told ``reset`` (it may have missed events and should re-list).

Event shape (what ``/v1/events`` sends as each SSE ``data:``)::

    {"id": 1765432100000001, "type": "resource.configured", "subject": "Model/echo",
     "owner": null, "ts": 1765432100.1, "data": {...}}

Types: ``resource.<created|configured|deleted>``, ``model.status``,
``job.<queued|running|retrying|succeeded|failed|cancelled>``, ``job.log`` (one line of output),
``run.<status>`` (a pipeline run with its steps). Log lines never carry secrets beyond what the
job itself printed; readers are filtered by RBAC and ownership at the gateway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from mnemos._actors import EVENTS
from mnemos.trace._actors import ensure_named, ray_connected

__all__ = [
    "BUS_NAME", "CAPACITY", "FAMILIES", "EventBus", "bus", "flush", "iter_events", "matches", "parse_sse", "publish",
    "wanted_types", "watch",
]  # fmt: skip

BUS_NAME = EVENTS
CAPACITY = 10_000
"""Events the bus keeps; a reader further behind than this gets ``reset``."""
FAMILIES = ("resource", "model", "job", "run")
"""The families of event types: ``types`` names one (``job``) or an exact type of one (``job.log``)."""
_OUTBOX_MAX = 10_000
_FLUSH_S = 0.05
_OWNERS_MAX = 50_000


class EventBus:
    """The ring buffer of recent events (an async Ray actor; see the module docstring).

    Args:
        capacity: how many events are kept.
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._last = time.time_ns() // 1000  # the first event is this + 1
        self._owners: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._changed: asyncio.Event | None = None

    def _wake(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    async def publish(self, events: list[dict[str, Any]]) -> int:
        """Number and keep ``events``; returns the last id. A ``job.log`` without an owner gets the
        owner its job's state events named (so filtering never depends on the log writer)."""
        now = time.time()
        for event in events:
            self._last += 1
            subject = str(event.get("subject", ""))
            owner = event.get("owner")
            if owner and subject.startswith("job:"):
                self._owners[subject] = str(owner)
                self._owners.move_to_end(subject)
                while len(self._owners) > _OWNERS_MAX:
                    self._owners.popitem(last=False)
            elif owner is None and subject in self._owners:
                owner = self._owners[subject]
            self._events.append({**event, "id": self._last, "owner": owner, "ts": event.get("ts") or now})
        wake = self._wake()
        wake.set()
        self._changed = asyncio.Event()
        return self._last

    async def last(self) -> int:
        """The id of the newest event (of this bus, or where it starts)."""
        return self._last

    async def read(self, after: int | None = None, timeout: float = 0.0, limit: int = 1000) -> dict[str, Any]:
        """Events with an id above ``after`` (``None``: from now), waiting up to ``timeout`` s for one.

        Returns ``{"events": [...], "last": id, "reset": bool, "why": str}``: ``last`` is where to
        resume; ``reset`` is true when events after ``after`` were dropped from the ring (``why``:
        ``"dropped"``), or ``after`` is not an id of this bus (``"restarted"``): the events returned
        then start at the oldest kept.
        """
        if after is None:
            after = self._last
        if timeout > 0 and after == self._last:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake().wait(), timeout)
        # checked once awake: a burst larger than the ring, published while this read waited, dropped some
        oldest = self._events[0]["id"] if self._events else self._last + 1
        why = "restarted" if after > self._last else "dropped" if after < oldest - 1 else ""
        reset = bool(why)
        if reset:
            after = oldest - 1
        out = [e for e in self._events if e["id"] > after][:limit]
        return {"events": out, "last": out[-1]["id"] if out else after, "reset": reset, "why": why}

    async def info(self) -> dict[str, Any]:
        oldest = self._events[0]["id"] if self._events else None
        return {"last": self._last, "oldest": oldest, "kept": len(self._events), "capacity": self._events.maxlen}


def bus() -> Any:
    """The ``events`` actor, started on first use."""
    return ensure_named(EventBus, BUS_NAME, max_concurrency=1000)


class _Outbox:
    """Events of this process waiting to be sent; a daemon thread sends them in batches."""

    def __init__(self) -> None:
        self.pending: collections.deque[dict[str, Any]] = collections.deque(maxlen=_OUTBOX_MAX)
        self.ready = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self._handle: Any = None
        self._thread = threading.Thread(target=self._run, name="mnemos-events", daemon=True)
        self._thread.start()

    def put(self, event: dict[str, Any]) -> None:
        self.idle.clear()
        self.pending.append(event)
        self.ready.set()

    def _run(self) -> None:
        while True:
            self.ready.wait()
            time.sleep(_FLUSH_S)  # let a burst (a job printing lines) travel as one batch
            self.ready.clear()
            self.send()

    def send(self) -> None:
        batch: list[dict[str, Any]] = []
        while self.pending:
            batch.append(self.pending.popleft())
        if batch and ray_connected():
            try:
                if self._handle is None:
                    self._handle = bus()
                self._handle.publish.remote(batch)
            except Exception:  # noqa: BLE001 - the bus is down: these events are lost, the caller is not
                self._handle = None
        if not self.pending:
            self.idle.set()


_OUTBOX: _Outbox | None = None
_OUTBOX_LOCK = threading.Lock()


def _outbox() -> _Outbox:
    global _OUTBOX
    if _OUTBOX is None:
        with _OUTBOX_LOCK:
            if _OUTBOX is None:
                _OUTBOX = _Outbox()
    return _OUTBOX


def publish(type: str, subject: str, /, *, owner: str | None = None, **data: Any) -> None:
    """Announce an event (see the module docstring). Never blocks, never raises; a no-op in a
    process not connected to Ray.

    Args:
        type: ``<family>.<what>``, e.g. ``job.running``.
        subject: what it is about: ``Model/echo``, ``job:<id>``, ``run:<id>``, ``model/<name>``.
        owner: the principal owning the subject (jobs, runs), for ownership filtering.
        data: JSON-serialisable details.
    """
    try:
        if not ray_connected():
            return
        _outbox().put({"type": type, "subject": subject, "owner": owner, "ts": time.time(), "data": data})
    except Exception:  # noqa: BLE001 - publishing must never fail the caller
        return


def flush(timeout: float = 5.0) -> bool:
    """Send this process's pending events now (tests, short-lived CLI processes)."""
    if _OUTBOX is None:
        return True
    _OUTBOX.send()
    return _OUTBOX.idle.wait(timeout)


def iter_events(
    after: int | None = None, *, timeout: float | None = None, poll: float = 15.0
) -> Iterator[dict[str, Any]]:
    """Events from the bus as they come (in-process readers: the embedded client and CLI).

    Yields event dicts and, when the reader fell behind the ring, ``{"type": "reset", ...}``.
    Ends after ``timeout`` seconds when given.
    """
    import ray

    handle = bus()
    if after is None:
        after = ray.get(handle.last.remote())
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        wait = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
        answer = ray.get(handle.read.remote(after, wait))
        if answer["reset"]:
            yield {"type": "reset", "id": answer["last"], "data": {"reason": "events were missed; re-list"}}
        yield from answer["events"]
        after = answer["last"]


def matches(event: dict[str, Any], types: Iterable[str] = (), subject: str | None = None) -> bool:
    """Whether ``event`` is of one of ``types`` (a family like ``job`` or a type like ``job.log``)
    and about ``subject`` (when given). Control events (``reset``) always match."""
    kind = str(event.get("type", ""))
    if kind in ("reset", "dropped"):
        return True
    if subject is not None and event.get("subject") != subject:
        return False
    wanted = tuple(types)
    return not wanted or any(kind == t or kind.startswith(t + ".") for t in wanted)


def wanted_types(types: Iterable[str] | str) -> tuple[str, ...]:
    """``types`` as ``watch`` filters by them: a string is a comma-separated list (``"job,run"``, not
    the letters ``j``, ``o``, ``b``), and a family that is none of ``FAMILIES`` (``jobs``), which no
    event has, is a ``ValidationError`` naming ``types``, as ``GET /v1/events`` answers it."""
    from mnemos.errors import ValidationError

    items = types.split(",") if isinstance(types, str) else list(types) if isinstance(types, Iterable) else [types]
    if any(not isinstance(t, str) for t in items):
        got = next(t for t in items if not isinstance(t, str))
        raise ValidationError(f"types: expected event families or types as strings (\"job\", \"resource\", "
                              f"\"job.log\"), got {type(got).__name__} {got!r:.60}", param="types")  # fmt: skip
    wanted = tuple(t.strip() for t in items if t and t.strip())
    for family in (t.split(".", 1)[0] for t in wanted):
        if family not in FAMILIES:
            raise ValidationError(f"types: unknown event family {family[:40]!r}: use {', '.join(sorted(FAMILIES))}, "
                                  "or one type of them (job.log)", param="types")  # fmt: skip
    return wanted


def watch(
    types: Iterable[str] | str = (), *, subject: str | None = None, after: int | None = None,
    timeout: float | None = None,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The bus's events of ``types`` about ``subject``, as they happen (in-process, unfiltered by
    RBAC: the embedded client is the local admin). Ends after ``timeout`` s when given. An unknown
    family in ``types`` is a ``ValidationError`` at once (``wanted_types``), not a watch that never
    yields."""
    wanted = wanted_types(types)
    return _watch(wanted, subject, after, timeout)


def _watch(wanted: tuple[str, ...], subject: str | None, after: int | None,
           timeout: float | None) -> Iterator[dict[str, Any]]:  # fmt: skip
    for event in iter_events(after, timeout=timeout):
        if matches(event, wanted, subject):
            yield event


def parse_sse(lines: Iterable[str], *, positions: bool = False) -> Iterator[dict[str, Any]]:
    """Events of a ``text/event-stream`` (``/v1/events``) from its lines.

    A data event yields its JSON; a named control event (``reset``, ``dropped``) yields
    ``{"type": name, "id": …, "data": …}``; comments (heartbeats) are skipped. With ``positions``,
    a frame with an ``id`` and no data (where a new stream starts) yields ``{"type": "position",
    "id": …}``, so a reader knows where to resume before its first event.
    """
    name, ident = "", None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                payload = json.loads("\n".join(data))
                if name and name != "message":
                    payload = {"type": name, "id": _int_id(ident), "data": payload}
                yield payload
            elif positions and ident is not None:
                yield {"type": "position", "id": _int_id(ident)}
            name, data, ident = "", [], None
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "event":
                name = value
            elif field == "id":
                ident = value


def _int_id(ident: str | None) -> int | str | None:
    return int(ident) if ident is not None and ident.isdigit() else ident
