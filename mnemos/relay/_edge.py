"""The one seam between the gateway and SOUL's edge security (``mnemos.soul.edge.EdgeGuard``).

Every HTTP request passes ``EdgeMiddleware`` (pure ASGI) before any route runs, in this order:

1. **authenticate** (``Authorization: Bearer <JWT | API key>``): 401 (429 when the client address
   has spent its budget of look-ups of API keys never seen, see ``mnemos.soul.edge``) — unless the path is public
   (``PUBLIC_PATHS``: health checks, JWKS; ``/metrics`` unless ``trace.metricsAuth``) or under a
   prefix whose routes authenticate themselves (``SELF_AUTHENTICATING``: the console's cookie session);
2. **authorize** the route's verb, declared on the route as ``openapi_extra={"x-mnemos-verb": …}``
   (it shows in ``/openapi.json``): 403. A route that declares none authorizes itself with
   ``admit(request, verb)``, which reuses the principal admitted here;
3. **rate limit**: 429;
4. **then the body**: read here up to ``relay.maxBodyBytes`` — a larger ``Content-Length``, or a
   chunked body passing the limit, is answered 413 at once, without reading the rest, naming the
   setting, its value and the fix — checked as JSON (``check_json_body``: 400 for an unpaired
   surrogate, nesting past 64 levels, or an object that repeats a key, naming its path:
   ``body.role``) and handed to the route, which parses and validates it (400/422). An upload to
   ``/v1/files/{digest}`` (bytes, not JSON) streams on to its route, which spools it to disk,
   under the same rule with ``relay.maxFileBytes``.

So a request without credentials gets 401 whatever its body; with ``relay.auth: false`` only the
body limit applies and routes see no principal.

``HEAD`` is served as ``GET`` without the body (``HeadAsGet``, outside this middleware): the same
status, headers, authentication and authorization as ``GET``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from starlette.routing import Match

from mnemos._model import check_json_body
from mnemos.config import Settings
from mnemos.engram import Engram
from mnemos.errors import (
    BadRequestError,
    MnemosError,
    PayloadTooLargeError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from mnemos.relay._responses import CLIENT_WATCHED, PARSED_BODY, aclose
from mnemos.soul.edge import PUBLIC_PATHS, EdgeGuard
from mnemos.soul.http import router

__all__ = ["SELF_AUTHENTICATING", "VERB_KEY", "ClientWatch", "EdgeMiddleware", "EdgeSeam", "HeadAsGet", "route_verb"]

logger = logging.getLogger("mnemos.relay")

UPLOADS = "/v1/files/"
"""The path prefix whose bodies are bytes (a pipeline's files), up to ``relay.maxFileBytes``."""
VERB_KEY = "x-mnemos-verb"
"""The ``openapi_extra`` key naming the verb a route needs (``{"x-mnemos-verb": "infer"}``)."""

_VERB_CACHE_MAX = 4096
SELF_AUTHENTICATING: tuple[str, ...] = ("/ui",)
"""Path prefixes whose routes authenticate themselves (an allowlist: the console's cookie session)."""


class EdgeSeam:
    """Calls ``EdgeGuard.admit`` when ``relay.auth`` is true; a no-op otherwise."""

    def __init__(self, settings: Settings, engram: Engram) -> None:
        self.enabled = settings.relay.auth
        self.max_body_bytes = int(settings.relay.max_body_bytes)
        self.max_file_bytes = int(settings.relay.max_file_bytes)
        # /metrics is public (as Prometheus scrapes are) unless trace.metricsAuth asks for a credential.
        self.public_paths = PUBLIC_PATHS | (frozenset() if settings.trace.metrics_auth else {"/metrics"})
        self.guard: EdgeGuard | None = EdgeGuard(settings, engram) if self.enabled else None

    def require_guard(self) -> EdgeGuard:
        """SOUL's guard; with ``relay.auth`` off there is none, and nothing to sign in to (503)."""
        if self.guard is None:
            raise UnavailableError("authentication is off (relay.auth: false): there are no credentials to check")
        return self.guard

    async def admit(self, request: Request, verb: str) -> Any:
        """The caller's principal (None when auth is off), allowed ``verb``."""
        if self.guard is None:  # relay.auth is off
            return None
        return await self.guard.admit(request, verb)

    async def admit_headers(self, request: Request, verb: str | None) -> Any:
        """Authenticate, authorize ``verb`` (when given) and rate-limit, from the headers only."""
        if self.guard is None:
            return None
        return await self.guard.admit_headers(request, verb)

    def install_routes(self, app: FastAPI) -> bool:
        """Mount SOUL's routes (JWKS, ``/v1/tokens``) when the guard is active."""
        if self.guard is None:
            return False
        app.state.soul_guard = self.guard
        app.include_router(router)
        return True

    async def aclose(self) -> None:
        await aclose(self.guard)


def route_verb(app: Any, scope: dict[str, Any]) -> str | None:
    """The verb the route serving ``scope`` declares (``openapi_extra[VERB_KEY]``), if any."""
    for route in getattr(app, "routes", ()):
        extra = getattr(route, "openapi_extra", None)
        if not extra or VERB_KEY not in extra:
            continue
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(extra[VERB_KEY])
    return None


def _route_path(scope: dict[str, Any]) -> str:
    """The path as the app's routes see it (a Serve route prefix is the scope's ``root_path``)."""
    path, root = scope["path"], scope.get("root_path") or ""
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def _public(path: str, public_paths: frozenset[str]) -> bool:
    if path in public_paths:
        return True
    return any(path == prefix or path.startswith(prefix + "/") for prefix in SELF_AUTHENTICATING)


def _too_large(limit: int, path: str = "", sent: str = "") -> PayloadTooLargeError:
    """The 413 for a body over ``limit`` bytes sent to ``path`` (``sent``: its size, when declared):
    it names what was too large, the setting that bounds it with its value, and the fix."""
    what = f"request body of {sent}" if sent else "request body"
    if path.startswith(UPLOADS):
        digest = path[len(UPLOADS) :][:80]
        return PayloadTooLargeError(
            f"file {digest!r}: {what} exceeds the limit of {limit} bytes (relay.maxFileBytes): raise "
            "relay.maxFileBytes, or store the file in ENGRAM/S3 yourself and pass its ref instead of uploading it",
            param="body",
        )
    return PayloadTooLargeError(
        f"{what} exceeds the limit of {limit} bytes (relay.maxBodyBytes): send a smaller body (large inputs as "
        "ENGRAM refs), or raise relay.maxBodyBytes",
        param="body",
    )


def limited_receive(receive: Any, limit: int, path: str = "") -> Any:
    """``receive`` that raises ``PayloadTooLargeError`` (``_too_large``) as soon as more than
    ``limit`` body bytes have arrived (the rest is not read)."""
    size = 0

    async def receive_within_limit() -> dict[str, Any]:
        nonlocal size
        message: dict[str, Any] = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise _too_large(limit, path)
        return message

    return receive_within_limit


async def read_limited(receive: Any, limit: int, path: str = "") -> list[dict[str, Any]]:
    """The request's ``http.request`` messages, read until the body ends (``limited_receive``:
    ``PayloadTooLargeError`` past ``limit`` bytes)."""
    messages: list[dict[str, Any]] = []
    receive = limited_receive(receive, limit, path)
    while True:
        message = await receive()
        messages.append(message)  # a disconnect too: the app sees it
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _body_headers(scope: dict[str, Any], limit: int, path: str = "") -> None:
    """The headers that describe the body, in one pass: a ``Content-Length`` over ``limit`` is a 413
    (not a number: 400), and a ``Content-Encoding`` (gzip …) a 415 naming the header and the fix:
    nothing here decodes one, and its bytes would be read as the body itself."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            if not value.isdigit():
                raise BadRequestError("Content-Length is not a number", param="content-length")
            size = int(value) if len(value) <= 18 else None  # (int() refuses 4,300 digits and more)
            if size is None or size > limit:
                said = f"{size} bytes" if size is not None else f"a {len(value)}-digit number of bytes"
                raise _too_large(limit, path, said)
        elif key == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            shown = value.decode("latin-1")[:40]
            raise UnsupportedMediaTypeError(f"Content-Encoding {shown!r} is not accepted: send the request body "
                                            "uncompressed", param="content-encoding")  # fmt: skip


class EdgeMiddleware:
    """Admit every HTTP request before its route runs (see the module docstring).

    Args:
        app: the ASGI app behind it.
        seam: the gateway's ``EdgeSeam``.
    """

    def __init__(self, app: Any, seam: EdgeSeam) -> None:
        self.app = app
        self.seam = seam
        self._verbs: dict[tuple[str, str, str], str | None] = {}  # routes are fixed once the app is built

    def _verb(self, scope: dict[str, Any]) -> str | None:
        """``route_verb``, remembered per (method, root path, path): matching every route costs more
        than the rest of the edge. Bounded, so that requests to random paths cannot grow it."""
        key = (scope["method"], scope.get("root_path") or "", scope["path"])
        try:
            return self._verbs[key]
        except KeyError:
            pass
        verb = route_verb(scope.get("app"), scope)
        if len(self._verbs) >= _VERB_CACHE_MAX:
            self._verbs.clear()
        self._verbs[key] = verb
        return verb

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from mnemos.relay._errors import error_response

        path = _route_path(scope)
        upload = path.startswith(UPLOADS)
        limit = self.seam.max_file_bytes if upload else self.seam.max_body_bytes
        try:
            if self.seam.enabled and not _public(path, self.seam.public_paths):
                request = Request(scope)
                await self.seam.admit_headers(request, self._verb(scope))
            _body_headers(scope, limit, path)
            messages = [] if upload else await read_limited(receive, limit, path)
            if messages:  # a lone surrogate, a deep body, a repeated key: refused for every route
                raw = b"".join(m.get("body", b"") for m in messages)
                value = check_json_body(raw)
                if isinstance(value, dict) and len(raw) <= _KEEP_PARSED_BYTES:
                    scope[PARSED_BODY] = (raw, value)
        except MnemosError as exc:
            await error_response(exc)(scope, receive, send)
            return
        if upload:  # a file (a model's weights): streamed on to its route, which spools it to disk
            await self.app(scope, limited_receive(receive, limit, path), send)
            return

        async def replay() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            return await receive()

        if not _unwatched(scope, messages):
            await self.app(scope, replay, send)
            return
        watch = ClientWatch(receive, send)
        scope[CLIENT_WATCHED] = True  # a stream needs no watcher of its own
        try:
            await self.app(scope, replay, watch.send)
        finally:
            watch.stop()


_KEEP_PARSED_BYTES = 64 << 10
"""A body up to this size leaves the JSON value its check parsed to the routes (``PARSED_BODY``), so
that the OpenAI fast path does not parse it again; a larger body's value is not held for its whole
request beside its bytes."""

_UNWATCHED = (b"x-request-disconnect-disabled", b"?1")
"""The header (Serve's ``SERVE_HTTP_REQUEST_DISCONNECT_DISABLED_HEADER``) with which Serve hands a request
to the replica's app without watching its client; ``mnemos up``'s HAProxy sets it on every request
(``mnemos.cradle._haproxy``), and the edge watches instead (:class:`ClientWatch`)."""


def _unwatched(scope: dict[str, Any], messages: list[dict[str, Any]]) -> bool:
    """Whether nobody else watches this request's client (:data:`_UNWATCHED`) and its body has
    arrived whole (a client gone while sending it shows in ``messages``: the app sees that)."""
    return bool(messages) and messages[-1]["type"] == "http.request" and _UNWATCHED in scope["headers"]


class ClientWatch:
    """Cancel the request's task when its client disconnects before its answer is sent, as Serve
    does when it watches the client itself.

    Serve's watch costs each request an ASGI receive proxy with a queue, two more tasks and an
    ``asyncio.wait`` (about 80 µs of the replica's CPU here, against 30 µs for this one pending
    ``receive()`` whose callback cancels the task). Cancelled, the request stops wherever it waits: a
    model's stream is closed, an adapter's connection dropped, the reservation settled. Once the
    answer's last byte went out (:meth:`send`) a disconnect changes nothing: the server reports the
    end of a response as one, and the request's own cleanup after it must not be cut short.

    Args:
        receive: the server's ``receive``, once the request's body has been read from it.
        send: the server's ``send``; the app sends through :meth:`send`.
    """

    __slots__ = ("_answered", "_send", "_task", "_waiting")

    def __init__(self, receive: Any, send: Any) -> None:
        self._answered = False
        self._send = send
        self._task = asyncio.current_task()
        self._waiting = asyncio.ensure_future(receive())
        self._waiting.add_done_callback(self._heard)

    async def send(self, message: dict[str, Any]) -> None:
        """``send``, noting the answer's end."""
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self._answered = True
        await self._send(message)

    def _heard(self, waiting: asyncio.Future[Any]) -> None:
        if self._answered or waiting.cancelled() or waiting.exception() is not None or self._task is None:
            return
        if waiting.result().get("type") == "http.disconnect":
            self._task.cancel()

    def stop(self) -> None:
        """The request is over: stop watching."""
        self._answered = True
        self._waiting.cancel()


class HeadAsGet:
    """Serve ``HEAD`` as ``GET``, sending its status and headers without the body (pure ASGI).

    FastAPI's routes answer only the methods they declare, so ``HEAD /v1/models`` was a 405. Here
    every middleware and route behind sees a ``GET`` (a ``HEAD`` is authenticated and authorized as
    its ``GET``; where no ``GET`` is declared the answer is the ``GET``'s 405). The answer ends as
    soon as its headers are sent; a streamed one (``/v1/events``) then sees the client gone.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        done = asyncio.Event()

        async def headers_only(message: dict[str, Any]) -> None:
            if done.is_set() or message["type"] != "http.response.start":
                return
            await send(message)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            done.set()

        async def until_done() -> dict[str, Any]:
            """The client's messages; ``http.disconnect`` once the headers are sent."""
            if done.is_set():
                return {"type": "http.disconnect"}
            message, ended = asyncio.ensure_future(receive()), asyncio.ensure_future(done.wait())
            try:
                await asyncio.wait((message, ended), return_when=asyncio.FIRST_COMPLETED)
            finally:
                ended.cancel()
                if not message.done():
                    message.cancel()
            return message.result() if message.done() and not message.cancelled() else {"type": "http.disconnect"}

        await self.app({**scope, "method": "GET"}, until_done, headers_only)
