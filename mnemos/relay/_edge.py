"""The one seam between the gateway and SOUL's edge security (``mnemos.soul.edge.EdgeGuard``).

With ``relay.auth`` on, every route but the health checks calls ``admit(request, verb)``, which
authenticates, authorizes the verb, applies the rate limit and the body-size limit, and returns
the principal. With it off, requests are anonymous. When auth is on but SOUL's edge module is not
installed, requests fail closed (503) instead of being let through. With the guard active, SOUL's
routes (``/.well-known/jwks.json``, ``/v1/tokens``) are mounted too.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request

from mnemos.config import Settings
from mnemos.engram import Engram
from mnemos.errors import UnavailableError

logger = logging.getLogger("mnemos.relay")


class EdgeSeam:
    """Calls ``EdgeGuard.admit`` when ``relay.auth`` is true; a no-op otherwise."""

    def __init__(self, settings: Settings, engram: Engram) -> None:
        self.enabled = settings.relay.auth
        self.guard: Any = None
        self._missing: str | None = None
        if self.enabled:
            try:
                from mnemos.soul.edge import EdgeGuard  # type: ignore[import-not-found]
            except ImportError as exc:
                self._missing = f"{exc}"
                logger.error("relay.auth is on but mnemos.soul.edge cannot be imported: %s", exc)
            else:
                self.guard = EdgeGuard(settings, engram)

    async def admit(self, request: Request, verb: str) -> Any:
        """The caller's principal (None when auth is off)."""
        if not self.enabled:
            return None
        if self.guard is None:
            raise UnavailableError(
                "authentication is on (relay.auth) but SOUL's edge guard is not available "
                f"({self._missing}); set MNEMOS_RELAY__AUTH=false to serve without authentication"
            )
        return await self.guard.admit(request, verb)

    def install_routes(self, app: FastAPI) -> bool:
        """Mount SOUL's routes (JWKS, ``/v1/tokens``) when the guard is active."""
        if self.guard is None:
            return False
        try:
            from mnemos.soul.http import router
        except ImportError:
            return False
        app.state.soul_guard = self.guard
        app.include_router(router)
        return True

    async def aclose(self) -> None:
        closer = getattr(self.guard, "aclose", None)
        if closer is not None:
            await closer()
