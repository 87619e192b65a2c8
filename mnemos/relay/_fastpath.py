"""The OpenAI routes' well-formed requests, handed to their endpoints without FastAPI's routing.

Per request FastAPI matches the path against every route, builds its dependency graph's values,
parses and validates the body and wraps the endpoint in three layers of exception handling: about
70 µs of the gateway replica's CPU on this machine (a fifth of what MNEMOS adds over a bare
Serve deployment; ``benchmarks/RESULTS.md``). ``OpenAIFastPath`` sits inside the edge (the caller
is authenticated and authorized, the body read, size-checked and checked for repeated keys) and
serves a ``POST`` to one of its paths itself when the body is ``application/json`` and validates
against the route's model, exactly as FastAPI would validate it; the endpoint function is the
route's own. Every other request, including each one FastAPI would refuse, goes on to FastAPI
unchanged (the body replayed), so refusals keep their words and status.

An exception from the endpoint gets the application's handler for it, as inside FastAPI; one no
handler claims (the catch-all ``Exception`` one is the server-error middleware's) propagates to
that middleware, as it did.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pydantic
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mnemos.relay._edge import _route_path
from mnemos.relay._responses import PARSED_BODY

__all__ = ["Endpoint", "OpenAIFastPath"]

Endpoint = tuple[type[pydantic.BaseModel], Callable[[Any, Request], Awaitable[Response]]]
"""A route's body model and its endpoint function, ``endpoint(body, request)``."""


class OpenAIFastPath:
    """Pure ASGI: ``POST`` requests to ``routes`` (path → ``Endpoint``) served without FastAPI's
    routing when FastAPI would accept them (module docstring); added innermost, inside the edge.

    Args:
        app: the next application (the rest of the middleware stack and FastAPI).
        fastapi: the application whose exception handlers answer an endpoint's exceptions.
        routes: the paths served here.
    """

    def __init__(self, app: Any, fastapi: FastAPI, routes: dict[str, Endpoint]) -> None:
        self.app = app
        self.fastapi = fastapi
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        entry = None
        if scope["type"] == "http" and scope["method"] == "POST" and _json_declared(scope["headers"]):
            entry = self.routes.get(_route_path(scope))
        if entry is None:
            await self.app(scope, receive, send)
            return
        messages = []
        while True:  # the edge has read the body already: this replays it from memory
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        raw = b"".join(m.get("body", b"") for m in messages)
        model, endpoint = entry
        try:
            checked = scope.get(PARSED_BODY)  # the edge's parse of these bytes, else as Starlette's ``Request.json``
            parsed = checked[1] if checked is not None and checked[0] == raw else json.loads(raw)
            body = model.model_validate(parsed, from_attributes=True) if isinstance(parsed, dict) else None
        except (ValueError, pydantic.ValidationError):  # FastAPI says what is wrong, in its words
            body = None
        if body is None:

            async def replay() -> Any:
                return messages.pop(0) if messages else await receive()

            await self.app(scope, replay, send)
            return
        request = Request(scope, receive, send)
        request._body, request._json = raw, parsed  # what ``request.body()`` and ``.json()`` return
        try:
            response = await endpoint(body, request)
        except Exception as exc:  # noqa: BLE001 - answered by the application's handler, as in FastAPI
            response = await self._handled(request, exc)
        await response(scope, receive, send)

    async def _handled(self, request: Request, exc: Exception) -> Response:
        """The answer of the handler Starlette's exception middleware would pick for ``exc``; ``exc``
        raised again when none would (the server-error middleware then answers it, as before)."""
        handlers = {k: v for k, v in self.fastapi.exception_handlers.items() if k not in (500, Exception)}
        handler = None
        if isinstance(exc, HTTPException):
            handler = handlers.get(exc.status_code)
        if handler is None:  # the nearest class in the exception's MRO, as Starlette looks it up
            handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
        if handler is None:
            raise exc
        if inspect.iscoroutinefunction(handler):
            return cast(Response, await handler(request, exc))
        return cast(Response, await run_in_threadpool(cast(Any, handler), request, exc))  # as Starlette runs it


def _json_declared(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request declares ``Content-Type: application/json`` (a charset allowed): the
    type for which FastAPI parses a body as JSON; anything rarer goes to FastAPI."""
    for key, value in headers:
        if key == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False
