"""Console sessions: an API key signs in once; the browser then holds a short-lived JWT in an
``HttpOnly; SameSite=Strict`` cookie (never the key), revoked again at sign-out.

The JWT is minted by SOUL for the key's own subject, role and scopes (never more), so every gateway
replica verifies it the way it verifies any token, and a revoked or forged cookie is refused like
any credential. It names the key in its ``par`` claim and expires no later than the key, so it dies
with it: revoking the key (``DELETE /v1/tokens/{id}``) refuses its sessions too, within the second
it takes every replica to see the revocation. Writes made from console pages carry a CSRF token
derived from the cookie (an HMAC keyed by it): another site can neither read the cookie nor compute
the token, and ``SameSite=Strict`` keeps the browser from sending the cookie on cross-site requests
at all. Every console ``POST`` (sign-in included, against login CSRF) must also come from the
console's own pages: ``same_origin`` compares its ``Origin`` (else its ``Referer``) with the exact
origins of ``relay.console.allowedOrigins`` when set, else with its ``Host``.
The cookie is ``Secure`` when the request reached the gateway over HTTPS, as the ASGI server saw it
(uvicorn in Serve's proxy takes ``X-Forwarded-Proto`` only from ``FORWARDED_ALLOW_IPS``, by default
the loopback addresses; MNEMOS has no trusted-proxy setting of its own).

The cookie is scoped to ``Path=/ui``: the browser sends it to the console's pages only, never to
the API or to FastAPI's ``/docs`` and ``/redoc`` (whose scripts come from CDNs). ``CookieBearer``
lets the console's ``EventSource`` (which cannot set headers) read the event stream at ``/ui/events``
(``GET /v1/events``' own handler, ``event_stream.alias``): for ``GET``/``HEAD`` of that one path
with the cookie and no ``Authorization`` header, it adds ``Authorization: Bearer <cookie>``. No
other request is ever authenticated by the cookie as a bearer credential.

A refused sign-in is audited as the API's refusals are (``auth.refused``, never the key).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from mnemos.config import origin_of
from mnemos.errors import AuthenticationError, RateLimitError
from mnemos.soul.edge import CONSOLE_BEARER
from mnemos.soul.tokens import CONSOLE_AUDIENCE, LEEWAY_SECONDS, MAX_PARENTS

__all__ = ["COOKIE", "EVENTS", "PREFIX", "CookieBearer", "Sessions", "csrf_token", "drop_cookie", "same_origin",
           "set_cookie"]  # fmt: skip

COOKIE = "mnemos_session"
PREFIX = "/ui"
EVENTS = f"{PREFIX}/events"
"""The console's event stream: ``GET /v1/events``' handler, the one path the cookie is a bearer on."""
_LEGACY_PATH = "/"  # where the cookie was scoped before: deleted wherever it is set or dropped
SESSION_TTL_S = 8 * 3600.0
_SAFE = frozenset({"GET", "HEAD"})


def csrf_token(session: str) -> str:
    """The CSRF token of a session cookie value."""
    return hmac.new(session.encode(), b"mnemos-console-csrf", hashlib.sha256).hexdigest()[:40]


def csrf_ok(session: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(session), str(token))


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def same_origin(request: Request, allowed_origins: Collection[str] = ()) -> bool:
    """Whether a console form was posted from the console's own pages: the origin of its ``Origin``
    header (else of its ``Referer``) is one of ``allowed_origins`` exactly (``relay.console.allowedOrigins``:
    scheme, host and port; a default port may be written or left out), or, when none are set, names
    the host the request was sent to (``Host``; the scheme is not compared, since behind a proxy that
    ends TLS the gateway sees ``http`` where the browser sent ``https``). ``Origin: null`` never does.

    A request with neither header passes: it is not a browser's cross-site form (browsers send
    ``Origin`` on every cross-origin ``POST``), and a client that sends neither holds no victim's
    cookie. Without ``allowed_origins``, a proxy in front of the gateway must pass ``Host`` on unchanged.
    """
    source = request.headers.get("origin")
    if source is None:
        source = request.headers.get("referer")
        if source is None:
            return True
    try:
        origin = origin_of(source)
    except ValueError:
        return False
    if allowed_origins:
        return origin in _origins(allowed_origins)
    host = request.headers.get("host", "")
    parts = urlsplit(source.strip())
    if not host:
        return False
    default = _DEFAULT_PORTS[parts.scheme.lower()]
    return parts.netloc.lower().removesuffix(default) == host.strip().lower().removesuffix(default)


def _origins(allowed: Collection[str]) -> frozenset[str]:
    out = set()
    for origin in allowed:
        with contextlib.suppress(ValueError):  # settings hold only valid origins (config.ConsoleSettings)
            out.add(origin_of(origin))
    return frozenset(out)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    """Set the session cookie: ``Path=/ui``, ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS."""
    drop_cookie(response, request, _LEGACY_PATH)  # else the browser would send both, the stale one last
    response.set_cookie(COOKIE, token, max_age=max_age, path=PREFIX, httponly=True, samesite="strict",
                        secure=_secure(request))  # fmt: skip


def drop_cookie(response: Response, request: Request, path: str | None = None) -> None:
    """Delete the session cookie (with the attributes it was set with; both paths unless ``path``)."""
    for scope in (path,) if path else (PREFIX, _LEGACY_PATH):
        response.delete_cookie(COOKIE, path=scope, httponly=True, samesite="strict", secure=_secure(request))


class Sessions:
    """Sign-in, sign-out and the principal of a request, over RELAY's edge seam.

    Args:
        edge: the gateway's ``EdgeSeam`` (``enabled`` false: no sign-in, every visitor is admin).
    """

    def __init__(self, edge: Any) -> None:
        self.edge = edge

    @property
    def enabled(self) -> bool:
        return bool(self.edge.enabled)

    async def principal(self, request: Request) -> Any:
        """The principal of the request's session cookie; ``AuthenticationError`` when absent or refused."""
        if not self.enabled:
            from mnemos.soul.identity import Principal

            return Principal.anonymous()
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            raise AuthenticationError("sign in with an API key", param="api_key")
        guard = self.edge.require_guard()
        try:
            return await guard.verify_credential(cookie, _address(request))
        except RateLimitError as exc:  # a made-up API key as the cookie (the console sets tokens): sign in
            raise AuthenticationError(exc.message, param="api_key") from None

    async def sign_in(self, api_key: str, request: Request | None = None) -> tuple[Any, str, float]:
        """Verify ``api_key``; returns ``(principal, session token, expiry)``. A refusal of the sign-in
        ``request`` (the console's always passes it) is audited as the API's refusals are."""
        guard = self.edge.require_guard()
        try:
            principal, ttl, parents = await self._session_of(guard, api_key, _address(request))
        except (AuthenticationError, RateLimitError) as exc:  # (429: over the address's unknown-key look-ups)
            if request is not None:
                guard._audit_refusal(request, exc)  # SOUL's own record of a refused credential
            raise
        await guard.rate_limit(principal)
        limits = principal.limits.dump() if principal.limits is not None else None
        created = await asyncio.to_thread(  # the session keeps the key's team and models, spends its limits
            guard.store.create_token, principal.subject, principal.role, ttl=ttl, scopes=principal.scopes,
            actor=f"{principal.kind}:{principal.subject}", team=principal.team, limits=limits,
            limits_key=principal.limits_key or principal.credential_id if limits else "",
            parents=parents, audience=CONSOLE_AUDIENCE, models=principal.models,
        )  # fmt: skip
        return principal, created.secret, float(created.expires_at or time.time() + ttl)

    @staticmethod
    async def _session_of(guard: Any, api_key: str, client: str | None) -> tuple[Any, float, tuple[str, ...]]:
        """The key's principal, the session's lifetime and its parents; ``AuthenticationError`` when
        the key is refused or may not open a session."""
        principal = await guard.verify_credential(api_key.strip(), client)
        ttl = SESSION_TTL_S
        if principal.expires_at is not None:
            # Verifiers accept a token up to LEEWAY_SECONDS past its exp: end it that much sooner, so
            # that it is refused no later than the key it was made from.
            ttl = min(ttl, float(principal.expires_at) - LEEWAY_SECONDS - time.time())
        if ttl <= 0:
            raise AuthenticationError(
                f"this API key has expired or expires within {LEEWAY_SECONDS:g} s", param="api_key"
            )
        if principal.audience == CONSOLE_AUDIENCE:
            raise AuthenticationError("sign in with an API key, not with a session's token", param="api_key")
        parents = (principal.credential_id, *principal.parents)  # the session dies with any of them
        if len(parents) > MAX_PARENTS:
            raise AuthenticationError("sign in with an API key, not with a session's token", param="api_key")
        return principal, ttl, parents

    async def sign_out(self, principal: Any) -> None:
        """Revoke the session's token (its cookie is refused from now on).

        Only a token is revoked: a cookie holding an API key (the console never sets one) is
        dropped by the browser but the key stays valid, as sign-out ends sessions, not keys.
        """
        if not self.enabled or getattr(principal, "kind", "") != "token" or not getattr(principal, "credential_id", ""):
            return
        guard = self.edge.require_guard()
        actor = f"{principal.kind}:{principal.subject}"
        await asyncio.to_thread(guard.store.revoke, principal.credential_id, actor=actor)
        await guard.revoked(principal.credential_id)  # refused by this replica from the next request


class CookieBearer:
    """Pure ASGI: the session cookie as a bearer credential on the console's event stream, ``GET
    /ui/events``, and nowhere else (module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") in _SAFE and scope["path"] == EVENTS:
            headers = scope["headers"]
            if not any(k == b"authorization" for k, _ in headers):
                cookie = _cookie(headers)
                if cookie:
                    scope = {**scope, "headers": [*headers, (b"authorization", b"Bearer " + cookie.encode())],
                             CONSOLE_BEARER: True}  # fmt: skip
        await self.app(scope, receive, send)


def _cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    for key, value in headers:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, val = part.strip().partition("=")
                if name == COOKIE and val:
                    return val
    return None


def _address(request: Request | None) -> str | None:
    """The client address a look-up of an unknown API key is charged to (``EdgeGuard``'s budget)."""
    if request is None:
        return None  # a caller in this process (tests, tools): nothing to charge
    return request.client.host if request.client else ""
