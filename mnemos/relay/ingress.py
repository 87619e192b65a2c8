"""RELAY's ingress: the FastAPI app and the Serve deployment that hosts it.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (SSE when ``stream``),
``POST /v1/completions``, ``POST /v1/embeddings``, ``GET /healthz``, ``GET /readyz``,
``GET /openapi.json``, plus the routers of CORTEX (``/v1/jobs``), SYNKRON (pipelines) and TRACE
(``/metrics``) when those modules are installed; ``HEAD`` of every ``GET`` route. Requests on
``/v1`` are ``interactive``; the header ``X-Mnemos-Priority: batch`` marks batch work (pipelines),
which runtimes serve after.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve

from mnemos._http import JSONResponse
from mnemos.config import Settings
from mnemos.cortex import http as cortex_http
from mnemos.engram import Engram
from mnemos.errors import MnemosError, ModelAccessError
from mnemos.relay import _responses as out
from mnemos.relay._edge import VERB_KEY, EdgeMiddleware, EdgeSeam, HeadAsGet
from mnemos.relay._errors import error_response, install_error_handlers
from mnemos.relay._fastpath import Endpoint, OpenAIFastPath
from mnemos.relay._gateway import Gateway
from mnemos.relay._handlers import Handlers
from mnemos.relay._metering import OverheadHeader
from mnemos.relay._openapi import MethodGuard, complete_openapi
from mnemos.relay.console import mount as mount_console
from mnemos.relay.control import LineageReader
from mnemos.relay.control import build_router as build_control_router
from mnemos.relay.event_stream import build_router as build_events_router
from mnemos.relay.openai_schema import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    CreateEmbeddingResponse,
    EmbeddingRequest,
    ErrorResponse,
    ModelCard,
    ModelList,
    event_stream_doc,
)
from mnemos.relay.usage_http import build_router as build_usage_router
from mnemos.synkron import http as synkron_http
from mnemos.trace import http as trace_http

__all__ = ["EXTENSION_ROUTERS", "RelayIngress", "create_app"]

logger = logging.getLogger("mnemos.relay")

# The API routers of CORTEX (/v1/jobs), SYNKRON (/v1/runs, …) and TRACE (/v1/traces, …), with the
# verb their reads need (writes need ``submit``) and what else each is built with.
EXTENSION_ROUTERS: tuple[tuple[Any, str, dict[str, Any]], ...] = (
    (cortex_http.build_router, "read-artifacts", {}),
    (synkron_http.build_router, "read-artifacts", {}),
    (trace_http.build_router, "read-lineage", {"reader": LineageReader}),  # whose traces: lineage's rule
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 429, 502, 503)
}
# ``stream: true`` answers an event stream: documented beside the JSON answer (``response_model``).
_CHAT = {**_ERRORS, 200: {"content": event_stream_doc(ChatCompletionChunk)}}
_COMPLETION = {**_ERRORS, 200: {"content": event_stream_doc(Completion)}}
_READ = {VERB_KEY: "read-artifacts"}
_INFER = {VERB_KEY: "infer"}


def _include_extensions(app: FastAPI, edge: EdgeSeam, settings: Settings) -> None:
    """Include the routers of CORTEX, SYNKRON and TRACE, built with the gateway's settings.

    With authentication on, their ``auth`` dependency admits the caller with the verb ``submit``
    for writes and, for reads, ``read-lineage`` (TRACE) or ``read-artifacts`` (jobs, runs).
    """
    for build, read_verb, extra in EXTENSION_ROUTERS:
        auth = _admitting(edge, read_verb) if edge.enabled else None
        app.include_router(build(auth=auth, settings=settings, **extra))


def _admitting(edge: EdgeSeam, read_verb: str) -> Any:
    async def authenticate(request: Request) -> Any:
        verb = read_verb if request.method in ("GET", "HEAD") else "submit"
        return await edge.admit(request, verb)

    return authenticate


def create_app(gateway: Gateway, edge: EdgeSeam) -> FastAPI:
    """The gateway's FastAPI application over one replica's ``Gateway``."""
    # No redirect for a trailing slash: Starlette builds its Location from the client's Host header.
    app = FastAPI(title="MNEMOS RELAY", version="1", description="OpenAI-compatible gateway of MNEMOS.",
                  default_response_class=JSONResponse, redirect_slashes=False)  # fmt: skip
    install_error_handlers(app)
    fast: dict[str, Endpoint] = {}  # filled below with the OpenAI routes' models and endpoints
    app.add_middleware(OpenAIFastPath, fastapi=app, routes=fast)  # innermost: inside the edge
    app.add_middleware(MethodGuard, openapi=lambda: app.openapi())  # 405 + Allow, from the finished schema
    app.add_middleware(EdgeMiddleware, seam=edge)  # authenticate → authorize → rate limit → body
    app.add_middleware(OverheadHeader)  # x-mnemos-overhead-ms counts the edge too
    app.add_middleware(HeadAsGet)  # outermost: HEAD is a GET without its body, through the edge as GET

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the gateway process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorResponse}})
    async def readyz() -> Response:
        """Readiness: the routing table is loaded. With ``relay.auth`` off, each model's status and
        the adapters; with it on, how many models are in each status: this route is public, and the
        names are for authenticated callers (``GET /v1/models``, ``/v1/status``)."""
        models = {name: route.entry.get("status") for name, route in gateway.models.items()}
        if not gateway.ready:
            return error_response(MnemosError("routing table not loaded yet"))
        if gateway.settings.relay.auth:
            states = Counter(str(status) for status in models.values())
            return out.json_response({"status": "ready", "version": gateway.version, "modelStates": dict(states),
                                      "adapterCount": len(gateway.adapters.targets)})  # fmt: skip
        return out.json_response({"status": "ready", "version": gateway.version, "models": models,
                                  "adapters": sorted(gateway.adapters.targets)})  # fmt: skip

    async def open_to(principal: Any, cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The cards of the models ``principal`` may call (a Policy's access rules; as OpenAI lists them)."""
        governor = gateway.meter.governor
        return [card for card in cards if await governor.may_call(principal, card["id"])]

    @app.get("/v1/models", tags=["openai"], response_model=ModelList, responses=_ERRORS, openapi_extra=_READ)
    async def list_models(request: Request) -> Response:
        """Models served by this gateway (ready models and adapter-served names) that the caller may call."""
        principal = await edge.admit(request, "read-artifacts")
        return out.json_response({"object": "list", "data": await open_to(principal, gateway.listing())})

    meter = gateway.meter
    handlers = Handlers(gateway, edge)

    @app.get("/v1/models/{model_id:path}", tags=["openai"], response_model=ModelCard, responses=_ERRORS,
             openapi_extra=_READ)
    async def get_model(model_id: str, request: Request) -> Response:
        """One served model. A model the caller may not call is 403 ``model_not_allowed`` whatever its
        state, as a chat to it answers; else what a chat to it says: 404 for a name nothing serves,
        503 for a Model not ready (its phase and reason)."""
        principal = await edge.admit(request, "read-artifacts")
        try:
            await handlers.refuse_first(principal, model_id)
        except ModelAccessError as exc:
            handlers.refused(request, exc, principal, "read-artifacts")
            raise
        gateway.model(model_id, "any")  # 404 or 503 as a chat to it says; past it, the listing holds it
        return out.json_response(next(card for card in gateway.listing() if card["id"] == model_id))
    app.state.meter = meter

    @app.post("/v1/chat/completions", tags=["openai"], response_model=ChatCompletion, responses=_CHAT,
              openapi_extra=_INFER)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        """Chat completion; ``stream: true`` answers ``text/event-stream`` chunks."""
        return await handlers.generate(request, body, "chat")

    @app.post("/v1/completions", tags=["openai"], response_model=Completion, responses=_COMPLETION,
              openapi_extra=_INFER)
    async def completions(body: CompletionRequest, request: Request) -> Response:
        """Text completion of one prompt; ``stream: true`` answers ``text/event-stream`` chunks."""
        return await handlers.generate(request, body, "completions")

    @app.post("/v1/embeddings", tags=["openai"], response_model=CreateEmbeddingResponse, responses=_ERRORS,
              openapi_extra=_INFER)
    async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
        """Embeddings of one text or a list of texts (floats, or base64 float32)."""
        return await handlers.embeddings(request, body)

    fast.update({"/v1/chat/completions": (ChatCompletionRequest, chat_completions),
                 "/v1/completions": (CompletionRequest, completions),
                 "/v1/embeddings": (EmbeddingRequest, embeddings)})  # fmt: skip
    _include_extensions(app, edge, gateway.settings)  # /v1/jobs, /v1/runs, /v1/traces …
    app.include_router(build_usage_router(edge.admit, lambda: meter.governor.actor))  # GET /v1/usage
    app.include_router(build_events_router(edge.admit, max_streams=gateway.settings.relay.max_event_streams,
                                           max_total=gateway.settings.relay.max_event_streams_total))

    def served_models() -> dict[str, Any]:
        """``models``: each Model's serving state; ``model_status``: its status record (phase, replicas,
        reason: what ``mnemos get model`` shows, also over ``--url``)."""
        return {"version": gateway.version, "models": {n: r.entry.get("status") for n, r in gateway.models.items()},
                "model_status": {record["name"]: record for record in gateway.statuses()}}  # fmt: skip

    # /apis/… (resources), /v1/status, /v1/lineage, /v1/spaces, /v1/secrets
    app.include_router(build_control_router(edge, gateway.settings, gateway.engram, status=served_models,
                                           governor=gateway.meter.governor))
    mount_console(app, gateway, edge)  # the web console at /ui
    edge.install_routes(app)  # SOUL's JWKS and /v1/tokens, when auth is on
    complete_openapi(app, edge.public_paths, edge.enabled, named=(ChatCompletionChunk,))
    return app


@serve.deployment(name="RelayIngress", max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.5})
@serve.ingress()
class RelayIngress:
    """The gateway's Serve deployment: one FastAPI app per replica over a ``Gateway``.

    Args:
        settings: MNEMOS settings (``relay.*``).
        engram: the ENGRAM root (registry, lineage).
        models: Model/Adapter documents to apply on start (``build_app``'s ``models``).
    """

    async def __init__(  # type: ignore[misc]  # Serve awaits async constructors
        self, settings: Settings, engram: Engram, models: list[dict[str, Any]] | None = None
    ) -> None:
        from mnemos.relay.controller import ensure_controller
        from mnemos.trace.telemetry import log_through_serve, setup_tracing

        self.settings = settings
        log_through_serve()
        setup_tracing(settings, component="relay")
        controller = ensure_controller(settings, engram)
        if models:
            await _apply_documents(settings, engram, models)
        self.edge = EdgeSeam(settings, engram)
        self.gateway = Gateway(settings, engram, controller)
        await self.gateway.start()

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = create_app(self.gateway, self.edge)
        # The OpenAPI schema answers every request's 405 check (``MethodGuard``); built lazily, the
        # first request of each replica waited for it (66 ms here). Built now, during the replica's
        # start, its objects are also among those Serve freezes out of the garbage collector.
        app.openapi()
        return app

    async def check_health(self) -> None:
        return None

    async def __del__(self) -> None:
        gateway = getattr(self, "gateway", None)
        if gateway is not None:
            await gateway.close()
        edge = getattr(self, "edge", None)
        if edge is not None:
            await edge.aclose()


async def _apply_documents(settings: Settings, engram: Engram, docs: list[dict[str, Any]]) -> None:
    """Apply documents through the ``genome`` actor (which stores them and tells the controller)."""
    from mnemos.genome.service import ensure

    genome = ensure(settings, engram)
    for doc in docs:
        await genome.apply.remote(doc, "serve-config")
