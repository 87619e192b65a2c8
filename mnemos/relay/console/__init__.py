"""The web console at ``/ui``: server-rendered pages over the gateway's own state, live through
``/ui/events`` (``/v1/events``' handler); sign-in with an API key, session in an HttpOnly,
SameSite=Strict cookie scoped to ``/ui``.

``mount(app, gateway, edge)`` adds it to RELAY's FastAPI app (``mnemos.relay.ingress``).
"""

from __future__ import annotations

from mnemos.relay.console.app import mount

__all__ = ["mount"]
