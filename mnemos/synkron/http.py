"""SYNKRON over HTTP: start and follow pipeline runs.

    POST /v1/pipelines/{name}/runs   {"params": {...}, "cache": true}  → 202 {run}
    GET  /v1/pipelines/{name}/runs   recent runs of a pipeline
    GET  /v1/runs/{id}               a run's state (steps, jobs, outputs)
    POST /v1/runs/{id}/cancel        → 202 {run}
    POST /v1/runs/{id}/resume        → 202 {run}

The gateway includes ``build_router(auth=…, settings=…)`` (or ``router``, which reads its
settings from ``MNEMOS_*``). Errors use the OpenAI error shape with the error's status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from mnemos._model import CoreModel, to_validation_error
from mnemos.config import Settings, load_settings
from mnemos.errors import BadRequestError, MnemosError

__all__ = ["RunRequest", "build_router", "router"]


class RunRequest(CoreModel):
    """The body of ``POST /v1/pipelines/{name}/runs``."""

    params: dict[str, Any] = Field(default_factory=dict, description="Values for the pipeline's spec.params.")
    cache: bool = Field(True, description="Reuse the outputs of steps whose inputs are unchanged.")


def _error(exc: MnemosError) -> JSONResponse:
    return JSONResponse(exc.to_openai(), status_code=exc.status)


def _subject(principal: Any) -> str | None:
    return getattr(principal, "subject", None) if principal is not None else None


def _authorize(principal: Any, verb: str) -> None:
    if principal is None or not hasattr(principal, "role"):
        return
    from mnemos.soul.rbac import authorize

    authorize(principal, verb)


def build_router(*, auth: Callable[..., Any] | None = None, settings: Settings | None = None) -> APIRouter:
    """The SYNKRON routes.

    Args:
        auth: a FastAPI dependency returning the caller's principal (raising when refused);
            starting, cancelling and resuming runs also need the ``submit`` verb.
        settings: the platform's settings (default: read from ``MNEMOS_*`` on first use).
    """
    router = APIRouter(tags=["pipelines"])
    clients: dict[str, Any] = {}

    async def no_auth() -> None:
        return None

    caller = Depends(auth or no_auth)

    def client() -> Any:
        if "client" not in clients:
            import ray

            from mnemos.client import Client

            clients["client"] = Client(settings or load_settings(), connected=ray.is_initialized())
        return clients["client"]

    async def call(fn: Callable[[], Any], status: int = 200, *, principal: Any = None, verb: str = "") -> JSONResponse:
        """``fn()`` on a thread as JSON; with ``verb``, the principal must be allowed it first."""
        try:
            if verb:
                _authorize(principal, verb)
            return JSONResponse(await asyncio.to_thread(fn), status_code=status)
        except MnemosError as exc:
            return _error(exc)

    @router.post("/v1/pipelines/{name}/runs", status_code=202)
    async def start_run(name: str, request: Request, principal: Any = caller) -> JSONResponse:
        """Start a run of the registered pipeline ``name``."""
        try:
            _authorize(principal, "submit")
            raw = await request.body()
            try:
                doc = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                raise BadRequestError(f"body is not JSON: {exc.msg}") from None
            try:
                body = RunRequest.model_validate(doc)
            except PydanticValidationError as exc:
                raise to_validation_error(exc) from None
        except MnemosError as exc:
            return _error(exc)

        def start() -> dict[str, Any]:
            c = client()
            pipeline = c.registry.get("Pipeline", name)
            handle = c.pipelines.run(pipeline, body.params, progress=False, wait=False, cache=body.cache,
                                     principal=_subject(principal))  # fmt: skip
            return handle.state()

        return await call(start, 202)

    @router.get("/v1/pipelines/{name}/runs")
    async def list_runs(name: str, principal: Any = caller) -> JSONResponse:
        """Recent runs of a pipeline, newest first."""
        return await call(lambda: {"object": "list", "data": client().pipelines.list(name)})

    @router.get("/v1/runs/{run_id}")
    async def get_run(run_id: str, principal: Any = caller) -> JSONResponse:
        """A run's state."""
        return await call(lambda: client().pipelines.get(run_id).state())

    @router.post("/v1/runs/{run_id}/cancel", status_code=202)
    async def cancel_run(run_id: str, principal: Any = caller) -> JSONResponse:
        """Cancel a running run."""
        return await call(lambda: client().pipelines.cancel(run_id), 202, principal=principal, verb="submit")

    @router.post("/v1/runs/{run_id}/resume", status_code=202)
    async def resume_run(run_id: str, principal: Any = caller) -> JSONResponse:
        """Resume a failed or cancelled run."""

        def resume() -> dict[str, Any]:
            return client().pipelines.resume(run_id, progress=False, wait=False, principal=_subject(principal)).state()

        return await call(resume, 202, principal=principal, verb="submit")

    return router


router = build_router()
