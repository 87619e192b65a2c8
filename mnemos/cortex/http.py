"""CORTEX over HTTP: ``/v1/jobs`` (a FastAPI router the RELAY gateway includes).

    POST   /v1/jobs                 {"function": "pkg.mod:fn", "args": [...], "kwargs": {...}, "queue": …}
    GET    /v1/jobs?queue=&status=&limit=
    GET    /v1/jobs/{id}?wait=<s>   the job; with ``wait`` it answers when finished (at most 300 s)
    DELETE /v1/jobs/{id}            cancel
    GET    /v1/jobs/{id}/logs

Only ``module:function`` references travel over HTTP, never pickles; references into modules
that could run arbitrary code (``os``, ``subprocess``, ``builtins`` …) or private names are
refused. Errors have the OpenAI shape (``{"error": {message, type, param, code}}``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError as PydanticValidationError

from mnemos._model import to_validation_error
from mnemos.cortex.job import JobRequest
from mnemos.errors import BadRequestError, MnemosError, PermissionDeniedError, ValidationError
from mnemos.trace.telemetry import SpanKind, inject, span

__all__ = ["DENIED_MODULES", "build_router", "cortex_handle", "router"]

DENIED_MODULES = frozenset(
    {
        "os",
        "sys",
        "subprocess",
        "shutil",
        "builtins",
        "importlib",
        "pickle",
        "marshal",
        "ctypes",
        "socket",
        "runpy",
        "code",
        "codeop",
        "pty",
        "posix",
        "multiprocessing",
        "signal",
        "io",
        "pathlib",
        "tempfile",
        "ray",
        "cloudpickle",
        "dill",
        "types",
        "gc",
        "inspect",
        "threading",
        "asyncio",
        "urllib",
        "http",
        "requests",
        "httpx",
        "fsspec",
        "s3fs",
        "boto3",
        "botocore",
        "shelve",
        "sqlite3",
        "webbrowser",
    }
)
_MAX_WAIT = 300.0
_handle: Any = None


def cortex_handle() -> Any:
    """The ``cortex`` actor (a FastAPI dependency; override it in tests or embedders)."""
    global _handle
    if _handle is None:
        from mnemos.cortex.control import get_cortex

        _handle = get_cortex()
    return _handle


def _check_reference(ref: str) -> None:
    module, _, attr = ref.partition(":")
    if module.split(".")[0] in DENIED_MODULES or any(p.startswith("_") for p in (*module.split("."), *attr.split("."))):
        raise PermissionDeniedError(f"function: {ref} may not be called over HTTP", param="function")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ValidationError(f"function: no module named {module!r}", param="function")


def _principal(principal: Any) -> str | None:
    if principal is None:
        return None
    for attr in ("subject", "name", "id"):
        value = getattr(principal, attr, None)
        if value:
            return str(value)
    return str(principal)


def _public(view: dict[str, Any]) -> dict[str, Any]:
    """A job view for HTTP: pickled results are named, not shipped."""
    result = view.get("result")
    if result and "inline" in result:
        view = {**view, "result": {k: v for k, v in result.items() if k != "inline"}}
    view.pop("traceback", None)
    return view


async def _call(handle: Any, method: str, *args: Any) -> Any:
    try:
        return await getattr(handle, method).remote(*args)
    except Exception as exc:  # noqa: BLE001 - a MnemosError raised in the actor arrives wrapped
        cause = getattr(exc, "cause", None)
        if isinstance(cause, MnemosError):
            raise cause from None
        if isinstance(exc, MnemosError):
            raise
        global _handle
        _handle = None
        from mnemos.errors import UnavailableError

        raise UnavailableError(f"CORTEX is not available: {type(exc).__name__}") from None


def _answer(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turn our errors into OpenAI-shaped JSON responses, with or without the gateway's handlers."""
    import functools

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except MnemosError as exc:
            return JSONResponse(exc.to_openai(), status_code=exc.status)

    return wrapper


async def _anonymous() -> Any:
    return None


def build_router(auth: Callable[..., Any] | None = None) -> APIRouter:
    """The ``/v1/jobs`` router; ``auth`` is a dependency returning the caller's principal."""
    api = APIRouter(tags=["jobs"])
    who = Depends(auth or _anonymous)
    cortex = Depends(cortex_handle)

    @api.post("/v1/jobs")
    @_answer
    async def submit_job(request: Request, principal: Any = who, handle: Any = cortex) -> Any:
        try:
            body = json.loads(await request.body() or b"null")
        except json.JSONDecodeError as exc:
            raise BadRequestError(f"the request body is not valid JSON: {exc.msg}") from None
        if not isinstance(body, dict):
            raise BadRequestError("the request body must be a JSON object with at least 'function'")
        try:
            job = JobRequest.model_validate(body)
        except PydanticValidationError as exc:
            raise to_validation_error(exc) from None
        _check_reference(job.function)
        with span("relay.jobs.submit", carrier=request.headers, kind=SpanKind.SERVER, function=job.function):
            spec = {**job.spec(), "trace": inject()}
            ids = await _call(handle, "submit_many", [spec], _principal(principal))
        return _public(await _call(handle, "get", ids[0]))

    @api.get("/v1/jobs")
    @_answer
    async def list_jobs(
        queue: str | None = None,
        status: str | None = None,
        limit: int = 100,
        principal: Any = who,
        handle: Any = cortex,
    ) -> Any:
        if not 1 <= limit <= 10_000:
            raise ValidationError("limit: must be between 1 and 10000", param="limit")
        data = await _call(handle, "list", queue, status, limit)
        return {"object": "list", "data": [_public(v) for v in data]}

    @api.get("/v1/jobs/{job_id}")
    @_answer
    async def get_job(job_id: str, wait: float | None = None, principal: Any = who, handle: Any = cortex) -> Any:
        if wait is None:
            return _public(await _call(handle, "get", job_id))
        if not 0 <= wait <= _MAX_WAIT:
            raise ValidationError(f"wait: must be between 0 and {_MAX_WAIT:g} seconds", param="wait")
        return _public(await _call(handle, "wait", job_id, wait))

    @api.delete("/v1/jobs/{job_id}")
    @_answer
    async def cancel_job(job_id: str, principal: Any = who, handle: Any = cortex) -> Any:
        return _public(await _call(handle, "cancel", job_id, _principal(principal)))

    @api.get("/v1/jobs/{job_id}/logs")
    @_answer
    async def job_logs(job_id: str, principal: Any = who, handle: Any = cortex) -> Any:
        return {"id": job_id, "object": "job.logs", "logs": await _call(handle, "logs", job_id)}

    return api


router = build_router()
