"""Every error the gateway returns, in OpenAI's shape: ``{"error": {message, type, param, code}}``.

Bad input is never a 500: malformed JSON is 400, a field that fails validation 422 naming the
field, an unknown model 404. Errors raised inside a model replica cross Ray wrapped in
``RayTaskError``; they are unwrapped so their status and message survive.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnemos._model import POSITIVE_DURATION_PATTERN, dump_json
from mnemos.errors import (
    BadRequestError,
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
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="mnemos"'
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
    """Map any exception raised while serving a request to a ``MnemosError``."""
    exc = unwrap(exc)
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
    logger.exception("unexpected error while serving %s", model or "a request", exc_info=exc)
    where = f"model {model!r}" if model else "the gateway"
    return MnemosError(f"{where} failed with {name}; see the gateway logs")


_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "body", "query", "header", "path"})


def _param_path(loc: Any) -> str:
    """``messages.0.role`` from pydantic's location, without union member tags (``str``, ``list[str]``)."""
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
        elif isinstance(part, str) and _FIELD.match(part) and part not in _TYPE_TAGS:
            parts.append(part)
    return ".".join(parts)


_PATTERN_HINTS: dict[str, str] = {POSITIVE_DURATION_PATTERN: "a duration above zero, such as 30s, 15m, 24h or 30d"}


def pattern_hint(pattern: str, hint: str) -> None:
    """Say ``hint`` (what a value must be) where a value fails ``pattern``: pydantic's own message
    quotes the regular expression, which names neither the form nor the fix."""
    _PATTERN_HINTS[pattern] = hint


def _message(err: dict[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "extra field not permitted"
    hint = _PATTERN_HINTS.get(str((err.get("ctx") or {}).get("pattern")))
    if err.get("type") == "string_pattern_mismatch" and hint:
        return f"{str(err.get('input'))[:40]!r} is not {hint}"
    return str(err.get("msg", "invalid"))


def validation_error(exc: RequestValidationError) -> MnemosError:
    """400 for a body that is not JSON, else 422 naming the first failing field."""
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        detail = next(err for err in errors if err.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error") or detail.get("msg")
        return BadRequestError(f"the request body is not valid JSON: {reason}", param=None)
    lines = []
    paths = []
    for err in errors:
        path = _param_path(err.get("loc", ()))
        paths.append(path)
        msg = _message(err)
        if err.get("type") == "missing" and not path:
            msg = "a JSON request body is required"
        lines.append(f"{path}: {msg}" if path else msg)
    # A union field reports once per member (``input`` and ``input.0``): name the most specific path.
    top = paths[0].split(".")[0] if paths else ""
    first = max((p for p in paths if p.split(".")[0] == top), key=len, default="") or None
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
    said = f"Content-Type {declared.split(';')[0]!r}" if declared else "no Content-Type"
    return UnsupportedMediaTypeError(f"the request body must be JSON, sent with Content-Type: application/json "
                                     f"(it came with {said}; curl: -H 'Content-Type: application/json')",
                                     param="content-type")  # fmt: skip


def install_error_handlers(app: FastAPI) -> None:
    """OpenAI-shaped responses for validation errors, our errors, HTTP errors and the rest."""

    async def on_validation(request: Request, exc: Exception) -> Response:
        return error_response(_not_json(request, exc) or validation_error(cast(RequestValidationError, exc)))

    async def on_mnemos(_: Request, exc: Exception) -> Response:
        return error_response(as_mnemos_error(exc))

    async def on_json(_: Request, exc: Exception) -> Response:
        return error_response(BadRequestError(f"the request body is not valid JSON: {exc}"))

    async def on_http(_: Request, exc: Exception) -> Response:
        exc = cast(StarletteHTTPException, exc)
        kind, code = _STATUS_CODES.get(exc.status_code, ("server_error", "internal_error"))
        body: dict[str, Any] = {"error": {"message": str(exc.detail), "type": kind, "param": None, "code": code}}
        return Response(dump_json(body), status_code=exc.status_code, media_type="application/json",
                        headers=getattr(exc, "headers", None))  # fmt: skip

    async def on_other(_: Request, exc: Exception) -> Response:
        return error_response(as_mnemos_error(exc))

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(MnemosError, on_mnemos)
    app.add_exception_handler(json.JSONDecodeError, on_json)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_other)
