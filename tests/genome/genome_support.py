"""Helpers shared by the GENOME tests (imported as ``genome_support``): the gateway's control routes
without a gateway."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Admin:
    """RELAY's edge answering an admin (``root``) for every request."""

    async def admit(self, request: Any, verb: str) -> Any:
        from mnemos.soul.identity import Principal

        return Principal("root", "admin", "apikey")


@contextlib.contextmanager
def control_routes(root: Path, edge: Any) -> Iterator[Any]:
    """A ``TestClient`` of the control routes (``/apis/…``, ``/v1/files``, ``/v1/secrets``, …) over
    ENGRAM under ``root``, behind ``edge`` (its ``admit(request, verb)`` is what the gateway's edge says)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._errors import install_error_handlers
    from mnemos.relay.control import build_router

    settings = load_settings(engram={"uri": str(root / "engram")})
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(edge, settings, Engram.from_settings(settings)))
    with TestClient(app) as http:
        yield http
