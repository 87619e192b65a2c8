"""SOUL fixtures: settings with a private ENGRAM, a guarded FastAPI app served by uvicorn."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request
from tests_support import serving


def soul_settings(root: Path, **relay: Any) -> Any:
    from mnemos.config import load_settings

    return load_settings(engram={"uri": str(root / "engram")}, relay={"max_body_bytes": 4096, **relay})


def guarded_app(guard: Any) -> FastAPI:
    """A plain app shaped like RELAY: SOUL's router plus routes that call ``guard.admit``."""
    from mnemos.soul.http import install

    app = FastAPI()
    install(app, guard)

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        principal = await guard.admit(request, "read-lineage")
        return {"ok": True, "principal": principal.subject}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        principal = await guard.admit(request, "infer")
        body = await request.json()  # the body the guard read stays readable
        return {"principal": principal.subject, "role": principal.role, "size": len(json.dumps(body))}

    @app.post("/v1/deploy")
    async def deploy(request: Request) -> dict[str, Any]:
        principal = await guard.admit(request, "deploy")
        return {"principal": principal.subject}

    @app.get("/v1/lineage")
    async def lineage(request: Request) -> dict[str, Any]:
        principal = await guard.admit(request, "read-lineage")
        return {"principal": principal.subject}

    return app


@contextlib.contextmanager
def _served(app: FastAPI) -> Iterator[Any]:
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread (its own event loop): ``.url``."""
    with serving(app, lifespan="off") as url:
        yield SimpleNamespace(url=url)


@pytest.fixture()
def soul_env(tmp_path: Path, ray_cluster: None) -> Iterator[dict[str, Any]]:
    """Settings, ENGRAM, identity store, a guard (shared rate-limit actor) and its app served on
    127.0.0.1 (``url``)."""
    from mnemos.engram import Engram
    from mnemos.soul import EdgeGuard, IdentityStore

    settings = soul_settings(tmp_path)
    engram = Engram.from_settings(settings)
    store = IdentityStore.from_settings(settings, engram)
    guard = EdgeGuard(settings, engram, refresh_s=0.2, max_stale_s=1.0)
    with _served(guarded_app(guard)) as served:
        yield {"settings": settings, "engram": engram, "store": store, "guard": guard, "url": served.url}


@pytest.fixture()
def make_settings() -> Any:
    """``make_settings(root, **relay)``: settings with ENGRAM under ``root``."""
    return soul_settings


@pytest.fixture()
def serve() -> Any:
    """``with serve(app) as served: served.url``: uvicorn on 127.0.0.1."""
    return _served


@pytest.fixture()
def make_app() -> Any:
    """``make_app(guard)``: a FastAPI app with SOUL's router and guarded routes."""
    return guarded_app


@pytest.fixture()
def token_gateway(tmp_path: Path, make_settings: Any, make_app: Any) -> Any:
    """SOUL's routes over a private ENGRAM, an admin key's headers and the identity store."""
    from mnemos.engram import Engram
    from mnemos.soul import EdgeGuard, IdentityStore

    settings = make_settings(tmp_path)
    engram = Engram.from_settings(settings)
    store = IdentityStore.from_settings(settings, engram)
    admin = store.create_api_key(f"root-{uuid.uuid4().hex[:8]}", "admin").secret  # its own rate-limit bucket
    with TestClient(make_app(EdgeGuard(settings, engram))) as client:
        yield client, {"Authorization": f"Bearer {admin}"}, store
