"""Every error the gateway returns, in OpenAI's shape: ``{"error": {message, type, param, code}}``.

Bad input is never a 500: malformed JSON is 400, a field that fails validation 422 naming the
field as the client's JSON path (``messages[0].tool_calls[0].id``, never a pydantic class name),
a JSON Schema no engine can use (a tool's ``parameters``, a ``response_format``) 400 as vLLM and
OpenAI answer it, an unknown model 404. Errors raised inside a model replica cross Ray wrapped in
``RayTaskError``; they are unwrapped so their status and message survive. Any other exception is a 500 that says
"internal error" and a request id (Serve's, also in ``X-Request-Id``), never the exception's class
or message: the log line with that id has them, and the traceback.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnemos._model import POSITIVE_DURATION_PATTERN, dump_json
from mnemos.errors import (
    BadRequestError,
    BudgetExceededError,
    MnemosError,
    NotFoundError,
    RateLimitError,
    UnavailableError,
    UnsupportedMediaTypeError,
    ValidationError,
)

logger = logging.getLogger("mnemos.relay")

_STATUS_CODES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "payload_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


class ModelNotFoundError(NotFoundError):
    """A model name that no Model or Adapter serves."""

    code = "model_not_found"


def error_response(exc: MnemosError) -> Response:
    """The HTTP response for one of our errors."""
    headers = {}
    if isinstance(exc, RateLimitError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif exc.status == 503 and exc.details.get("retry_after"):  # a model on its way: when to ask again
        headers["Retry-After"] = str(max(1, math.ceil(exc.details["retry_after"])))
    if isinstance(exc, BudgetExceededError):
        headers["X-Should-Retry"] = "false"  # the OpenAI SDKs' own hint: a spent budget is no transient error
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="mnemos"'
    if exc.details.get("request_id_header"):
        headers["X-Request-Id"] = str(exc.details["request_id"])
    return Response(dump_json(exc.to_openai()), status_code=exc.status, media_type="application/json", headers=headers)


def unwrap(exc: BaseException) -> BaseException:
    """The original exception behind Ray's ``RayTaskError`` wrappers."""
    seen = 0
    while seen < 5 and hasattr(exc, "cause") and type(exc).__name__.startswith("RayTaskError"):
        cause = exc.cause
        if not isinstance(cause, BaseException):
            break
        exc = cause
        seen += 1
    return exc


def as_mnemos_error(exc: BaseException, *, model: str | None = None) -> MnemosError:
    """Map any exception raised while serving a request to a ``MnemosError``; an unexpected one is
    an opaque 500 (``internal_error``)."""
    original, exc = exc, unwrap(exc)
    if isinstance(exc, MnemosError):
        return exc
    name = type(exc).__name__
    if name in ("DeploymentUnavailableError", "BackPressureError", "RayActorError", "ActorDiedError",
                "ActorUnavailableError", "RayServeException"):  # fmt: skip
        where = f"model {model!r}" if model else "the model deployment"
        return UnavailableError(f"{where} is not available right now ({name}); retry shortly")
    if name == "AioRpcError" and "RESOURCE_EXHAUSTED" in str(exc):  # a message over gRPC's limit between replicas
        where = f"model {model!r}" if model else "the model deployment"
        return BadRequestError(f"the answer of {where} is larger than Serve carries between replicas "
                               "(RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH); send fewer inputs in one request",
                               param="input")  # fmt: skip
    return internal_error(original, f"model {model!r}" if model else "a request")


def internal_error(exc: BaseException | None, where: str, detail: str = "") -> MnemosError:
    """A 500 that names nothing of the failure: a request id, logged here with the exception's
    class, message and traceback (``detail``: what else the log line should say)."""
    request_id = _serve_request_id()
    header = not request_id  # Serve sends its id in X-Request-Id itself
    request_id = request_id or f"req_{uuid.uuid4().hex[:20]}"
    logger.error("internal error %s while serving %s%s", request_id, where, f": {detail}" if detail else "",
                 exc_info=exc)  # fmt: skip
    return MnemosError(f"internal error (request id {request_id}: the operator finds it in the logs)",
                       request_id=request_id, request_id_header=header)  # fmt: skip


def _serve_request_id() -> str:
    """Serve's id of the request being served (the client's ``X-Request-Id`` or one Serve made: in
    Serve's log lines and its answer's ``X-Request-Id``), or "" outside a Serve request."""
    try:
        from ray.serve.context import _get_serve_request_context
    except ImportError:
        return ""
    return str(_get_serve_request_context().request_id or "")


_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "body", "query", "header", "path"})
_MISSING = object()


def _is_field(part: Any) -> bool:
    """A segment that may name a field the client left out (not a union member's class or tag)."""
    return isinstance(part, str) and _FIELD.match(part) is not None and part not in _TYPE_TAGS


def _holds(node: Any, part: Any) -> bool:
    """Whether ``part`` is a key of the object ``node`` or an index of the list ``node``."""
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    return isinstance(node, list) and type(part) is int and -len(node) <= part < len(node)


def _walk(node: Any, loc: tuple[Any, ...]) -> tuple[list[int | str], int]:
    """The segments of ``loc`` that are keys and indexes of ``node`` (the client's input), and how
    many of them lead to a value the client sent. Other segments are pydantic's names for union
    members (``ChatCompletionMessageFunctionToolCallParam``, ``str``, ``function-after[…]``) and are
    left out, except the last field-like one, which names a field the client left out."""
    parts: list[int | str] = []
    found = 0
    for i, part in enumerate(loc):
        if _holds(node, part):
            node, found = node[part], found + 1
            parts.append(part)
        elif isinstance(node, dict) and _is_field(part) and not any(_is_field(p) for p in loc[i + 1 :]):
            node = _MISSING  # the field the client left out
            parts.append(part)
    return parts, found


def _containers(node: Any, path: tuple[int | str, ...] = (), depth: int = 0) -> Any:
    """Every list and object in ``node`` with its path, outermost first (bounded in depth)."""
    if isinstance(node, (dict, list)) and depth < 64:
        yield path, node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            yield from _containers(value, (*path, key), depth + 1)


def json_path(parts: Any) -> str:
    """OpenAI's form of a JSON path: ``messages[0].tool_calls[0].id``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def client_path(loc: Any, data: Any = _MISSING) -> str:
    """The path, in the client's JSON (``data``), of the value pydantic's ``loc`` points at.

    Segments that are not keys of ``data`` are dropped: pydantic names a union's members by class
    or tag (``0.ChatCompletionMessageFunctionToolCallParam.id``, ``stop.str``). A ``loc`` that
    starts below the top (vLLM validates ``tool_calls`` lazily, from index 0 of the list) is found
    in ``data``: where most of its segments lead to values, the deepest such place. Without
    ``data`` (or with ``None``) only field-like segments and indexes are kept.
    """
    loc = tuple(loc)
    if data is _MISSING or data is None:
        return json_path([p for p in loc if (isinstance(p, int) and not isinstance(p, bool)) or _is_field(p)])
    parts, _ = _walk(data, loc)
    if loc and type(loc[0]) is int and isinstance(data, dict):
        best: tuple[int, int, list[int | str]] = (0, -1, parts)
        for prefix, node in _containers(data):
            below, hits = _walk(node, loc)
            if hits and (hits, len(prefix)) > best[:2]:
                best = (hits, len(prefix), [*prefix, *below])
        parts = best[2]
    return json_path(parts)


_PATTERN_HINTS: dict[str, str] = {POSITIVE_DURATION_PATTERN: "a duration above zero, such as 30s, 15m, 24h or 30d"}
_UNECHOED: set[str] = set()


def pattern_hint(pattern: str, hint: str, *, echo: bool = True) -> None:
    """Say ``hint`` (what a value must be) where a value fails ``pattern``: pydantic's own message
    quotes the regular expression, which names neither the form nor the fix. ``echo=False``: the
    value is not quoted back (a secret's name or key, where a value may be pasted by mistake)."""
    _PATTERN_HINTS[pattern] = hint
    if not echo:
        _UNECHOED.add(pattern)


_EXPECTED = {"int_type": "an integer", "float_type": "a number", "bool_type": "a boolean",
             "string_type": "a string"}  # fmt: skip
_GOT = {str: "a string", bool: "a boolean", int: "an integer", float: "a decimal number", list: "an array",
        dict: "an object", type(None): "null"}  # fmt: skip


def _message(err: dict[str, Any], path: str = "") -> str:
    """What is wrong, for the client: OpenAI's words for a value of the wrong JSON type."""
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "extra field not permitted"
    pattern = str((err.get("ctx") or {}).get("pattern"))
    hint = _PATTERN_HINTS.get(pattern)
    if kind == "string_pattern_mismatch" and hint:
        return f"{'the value' if pattern in _UNECHOED else repr(str(err.get('input'))[:40])} is not {hint}"
    got = _GOT.get(type(err.get("input")))
    if kind in _EXPECTED and got and path:
        return f"Invalid type for '{path}': expected {_EXPECTED[str(kind)]}, but got {got} instead."
    return str(err.get("msg", "invalid"))


def _root(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def validation_error(exc: RequestValidationError) -> MnemosError:
    """400 for a body that is not JSON, else 422 naming the first failing field as the client's
    JSON path (``messages[0].role``)."""
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        detail = next(err for err in errors if err.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error") or detail.get("msg")
        return BadRequestError(f"the request body is not valid JSON: {reason}", param=None)
    lines = []
    paths = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        in_body = bool(loc) and loc[0] == "body"
        path = client_path(loc[1:], exc.body) if in_body else client_path(loc)
        paths.append(path)
        msg = _message(err, path)
        if err.get("type") == "missing" and not path:
            msg = "a JSON request body is required"
        elif err.get("type") == "model_attributes_type" and not path:  # the body itself is not an object
            sent = _GOT.get(type(err.get("input")), "another JSON value")
            msg = f'the request body must be a JSON object ({{"model": …}}), not {sent}'
        lines.append(f"{path}: {msg}" if path and not msg.startswith("Invalid type for") else msg)
    # A union field reports once per member (``input`` and ``input[0]``): name the most specific path.
    top = _root(paths[0]) if paths else ""
    first = max((p for p in paths if _root(p) == top), key=len, default="") or None
    if errors and errors[0].get("type") == "invalid_schema":  # a schema no engine can use: vLLM's own 400
        return BadRequestError(lines[0], param=paths[0] or None)
    return ValidationError("; ".join(dict.fromkeys(lines)), param=first)


def _not_json(request: Request, exc: Exception) -> MnemosError | None:
    """415 when a JSON body was refused because it was declared as something else (``curl -d``
    sends ``application/x-www-form-urlencoded``): the usual validation message would say "Input
    should be a valid dictionary", which names neither the header nor the fix."""
    declared = request.headers.get("content-type", "")
    if "json" in declared.split(";")[0].lower():
        return None
    body_errors = [e for e in cast(RequestValidationError, exc).errors() if tuple(e.get("loc", ())) == ("body",)]
    if not body_errors or not any(e.get("type") in ("model_attributes_type", "dict_type") for e in body_errors):
        return None
    return UnsupportedMediaTypeError.not_json(declared)


_OPENAI_WITHOUT_V1 = frozenset({"/chat/completions", "/completions", "/embeddings", "/models", "/responses"})
"""The OpenAI routes as a client whose ``base_url`` lacks ``/v1`` asks for them."""


def install_error_handlers(app: FastAPI) -> None:
    """OpenAI-shaped responses for validation errors, our errors, HTTP errors and the rest."""

    async def on_validation(request: Request, exc: Exception) -> Response:
        return error_response(_not_json(request, exc) or validation_error(cast(RequestValidationError, exc)))

    async def on_mnemos(_: Request, exc: Exception) -> Response:
        return error_response(as_mnemos_error(exc))

    async def on_json(_: Request, exc: Exception) -> Response:
        return error_response(BadRequestError(f"the request body is not valid JSON: {exc}"))

    async def on_http(request: Request, exc: Exception) -> Response:
        exc = cast(StarletteHTTPException, exc)
        kind, code = _STATUS_CODES.get(exc.status_code, ("server_error", "internal_error"))
        message = str(exc.detail)
        if exc.status_code == 404 and request.url.path.rstrip("/") in _OPENAI_WITHOUT_V1:
            message += (f": {request.url.path} is served at /v1{request.url.path}; an OpenAI client's base_url "
                        "ends with /v1 (e.g. base_url='http://127.0.0.1:8080/v1')")  # fmt: skip
        body: dict[str, Any] = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return Response(dump_json(body), status_code=exc.status_code, media_type="application/json",
                        headers=getattr(exc, "headers", None))  # fmt: skip

    async def on_other(_: Request, exc: Exception) -> Response:
        return error_response(as_mnemos_error(exc))

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(MnemosError, on_mnemos)
    app.add_exception_handler(json.JSONDecodeError, on_json)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_other)
