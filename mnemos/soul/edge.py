"""The RELAY edge guard: authenticate, authorize, rate-limit and size-check every request.

RELAY's edge middleware calls ``await guard.admit_headers(request, verb)`` before any route runs
(authenticate → authorize → rate limit, from the headers alone; it then reads the body within
``relay.maxBodyBytes`` itself), and routes call ``await guard.admit(request, verb)``, which reuses
the principal admitted there and only authorizes ``verb``. Without the middleware (a plain app),
``admit`` does all of it, then checks the body (a body read here stays readable by the route)::

    principal = await guard.admit(request, "infer")

It raises, in this order:

- ``AuthenticationError`` (401): no, malformed, expired, forged, wrong-issuer, revoked or unknown
  credential (``Authorization: Bearer <JWT or mk_… API key>``);
- ``PermissionDeniedError`` (403): the role (or the credential's scopes) lacks the verb;
- ``RateLimitError`` (429, ``retry_after``): over the principal's limit (``relay.rateLimit``, or a
  Policy's ``spec.rateLimit`` naming the principal or ``role:<role>``), shared across replicas;
- ``PayloadTooLargeError`` (413): ``Content-Length`` or the actual body over ``relay.maxBodyBytes``.

Public paths (``/healthz``, ``/readyz``, ``/.well-known/jwks.json``) are admitted anonymously;
with ``relay.auth: false`` every request is an anonymous admin (limits and body size still apply).
Refusals (401/403) are audit events in lineage; they carry the reason, never the credential.
What a caller chooses (path, method) is cut to ``AUDIT_TEXT_MAX`` characters, and each client
address (with the subject, once authenticated) gets at most ``refusals_per_client`` events per
``refusal_window_s``; the refusals past that are written as one summary event (``more``: how many)
when the window ends. API key records are cached per replica, unknown ids too, each bounded.

Looking up an API key id this replica has never found costs an ENGRAM read, before the caller is
known: each client address (as the ASGI server reports it) may cause ``unknown_keys_per_client``
such reads per ``unknown_key_window_s``; past that, a key id never found here is refused with 429
(``RateLimitError``, ``Retry-After``) without a read. A key this replica has found before (it
remembers 10,000 ids) and every JWT are never held back, so callers who share an address (a NAT)
with a flood keep working; only a key new to this replica waits for the budget.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.requests import Request

from mnemos.engram import Engram
from mnemos.errors import (
    AuthenticationError,
    BadRequestError,
    MnemosError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
)
from mnemos.soul._audit import audit_id
from mnemos.soul._cache import RefreshingValue
from mnemos.soul.apikeys import ApiKeyRecord, is_api_key, parse_api_key, verify_api_key
from mnemos.soul.bucket import TokenBucket
from mnemos.soul.identity import Principal
from mnemos.soul.keys import KeyRing
from mnemos.soul.rbac import authorize
from mnemos.soul.store import IdentityStore
from mnemos.soul.tokens import CONSOLE_AUDIENCE, UnknownKeyError, verify_token

__all__ = ["ADMITTED_KEY", "AUDIT_TEXT_MAX", "CONSOLE_BEARER", "EdgeGuard", "LimitRule", "PUBLIC_PATHS",
           "admitted_principal"]

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/.well-known/jwks.json"})
"""Paths admitted anonymously (an allowlist: every other path needs a credential)."""
ADMITTED_KEY = "mnemos.principal"
"""Where ``admit_headers`` leaves the principal in the ASGI scope's ``state``."""
CONSOLE_BEARER = "mnemos.console_bearer"
"""The ASGI scope key the console sets where it hands its session cookie on as the bearer credential
(its event stream): the one place a console session's token (``aud: console``) is taken as one."""


def admitted_principal(scope: Any) -> Principal | None:
    """The principal an earlier ``admit_headers`` stored for this request, if any."""
    state = scope.get("state") if isinstance(scope, dict) else None
    found = state.get(ADMITTED_KEY) if isinstance(state, dict) else None
    return found if isinstance(found, Principal) else None


_APIKEY_CACHE_MAX = 10_000
_MINTED_ID_LEN = 16  # ``new_api_key``: 8 random bytes in hex; no other id was ever stored
AUDIT_TEXT_MAX = 256
"""Caller-chosen text (path, method) in a refusal event is cut to this many characters."""


def _cut(text: str) -> str:
    """``text`` cut to ``AUDIT_TEXT_MAX`` characters, the cut marked with the full length."""
    return text if len(text) <= AUDIT_TEXT_MAX else f"{text[:AUDIT_TEXT_MAX]}…[cut: {len(text)} chars]"


class _Recent:
    """A map of at most ``max_size`` entries (least recently used out first) that expire after ``ttl_s``."""

    def __init__(self, ttl_s: float, max_size: int) -> None:
        self.ttl_s = ttl_s
        self.max_size = max_size
        self._entries: OrderedDict[str, tuple[Any, float]] = OrderedDict()

    def get(self, key: str, now: float) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now - entry[1] > self.ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: str, value: Any, now: float) -> None:
        self._entries[key] = (value, now)
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_size:
            self._entries.popitem(last=False)


class _ApiKeyRecords:
    """API key records by id, read from ENGRAM at most once per ``ttl_s`` per id (concurrent
    requests share one read). Known and unknown ids are kept apart, each bounded: made-up ids evict
    only other made-up ids, never a known key. A minted id is random (64 bits, chosen by the store),
    so no caller can have it cached as unknown before it exists; revocation is read apart (the
    revocation list), so no cache here delays it. ``found`` remembers the ids ever found, after
    their records expire (for ``EdgeGuard``'s budget of look-ups)."""

    def __init__(self, load: Callable[[str], ApiKeyRecord | None], ttl_s: float) -> None:
        self._load = load
        self.known = _Recent(ttl_s, _APIKEY_CACHE_MAX)
        self.unknown = _Recent(ttl_s, _APIKEY_CACHE_MAX)
        self.found = _Recent(math.inf, _APIKEY_CACHE_MAX)
        self._loading: dict[str, asyncio.Future[ApiKeyRecord | None]] = {}

    def new_read(self, key_id: str) -> bool:
        """Whether looking ``key_id`` up would read ENGRAM for an id never found on this replica."""
        now = time.monotonic()
        return len(key_id) == _MINTED_ID_LEN and not self.found.get(key_id, now) and not self.unknown.get(key_id, now)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        now = time.monotonic()
        record: ApiKeyRecord | None = self.known.get(key_id, now)
        if record is not None or len(key_id) != _MINTED_ID_LEN or self.unknown.get(key_id, now):
            return record
        loading = self._loading.get(key_id)
        if loading is None:
            loading = asyncio.ensure_future(asyncio.to_thread(self._load, key_id))
            self._loading[key_id] = loading
            loading.add_done_callback(functools.partial(self._loaded, key_id, now))
        return await asyncio.shield(loading)

    def _loaded(self, key_id: str, started: float, loading: asyncio.Future[ApiKeyRecord | None]) -> None:
        del self._loading[key_id]
        if loading.cancelled() or loading.exception() is not None:
            return  # not cached: the next request reads again
        record = loading.result()
        if record is None:
            self.unknown.put(key_id, True, started)
        else:
            self.known.put(key_id, record, started)
            self.found.put(key_id, True, started)


class _LookupBudget:
    """Per client address, a token bucket of ``per_window`` look-ups per ``window_s`` (refilled
    evenly); addresses kept least-recently-used, at most ``max_clients``."""

    def __init__(self, per_window: int, window_s: float, max_clients: int = 10_000) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, client: str) -> None:
        """Spend one look-up of ``client``'s, or raise ``RateLimitError`` (429) when none is left."""
        bucket = self._buckets.pop(client, None) or TokenBucket(self.per_window / self.window_s, self.per_window)
        self._buckets[client] = bucket
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        if not bucket.take():
            raise RateLimitError(
                f"too many look-ups of unknown API keys from {client}: at most {self.per_window} per "
                f"{self.window_s:g} s per client address; retry later with a valid key (a key this gateway "
                "has seen before, or a token, is not held back)",
                retry_after=bucket.retry_after(),
                param="authorization",
            )

    def give(self, client: str) -> None:
        """Return a look-up that found its key."""
        bucket = self._buckets.get(client)
        if bucket is not None:
            bucket.give(1)


@dataclass
class _Window:
    """Refusals of one client in one window: the events written, the ones left for the summary."""

    start: float
    who: dict[str, Any] = field(default_factory=dict)
    written: int = 0
    dropped: int = 0


_Client = tuple[str, str | None]  # (address, subject once authenticated)
_Due = list[tuple[_Client, _Window]]  # summaries to write


class _RefusalThrottle:
    """At most ``limit`` refusal events per client per ``window_s``; past that, refusals are counted
    for one summary per window. Clients are kept least-recently-used, at most ``max_clients``."""

    def __init__(self, limit: int, window_s: float, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._clients: OrderedDict[_Client, _Window] = OrderedDict()

    def take(self, client: _Client, who: dict[str, Any], now: float) -> tuple[bool, _Due]:
        """Whether this refusal gets its own event, and the summaries due now (an ended window,
        an evicted client)."""
        due: _Due = []
        window = self._clients.pop(client, None)
        if window is None or now - window.start >= self.window_s:
            if window is not None and window.dropped:
                due.append((client, window))
            window = _Window(now, who)
        self._clients[client] = window
        if len(self._clients) > self.max_clients:
            evicted = self._clients.popitem(last=False)
            if evicted[1].dropped:
                due.append(evicted)
        if window.written < self.limit:
            window.written += 1
            return True, due
        window.dropped += 1
        return False, due

    def ended(self, now: float, *, every: bool = False) -> _Due:
        """The summaries due of windows that have ended (``every``: of all windows), each once."""
        due: _Due = []
        for client, window in self._clients.items():
            if window.dropped and (every or now - window.start >= self.window_s):
                due.append((client, replace(window)))
                window.dropped = 0
        return due

    def pending(self) -> bool:
        return any(window.dropped for window in self._clients.values())


LimitRule = tuple[frozenset[str], float, int, str]


class EdgeGuard:
    """The checks RELAY runs on every request (see the module docstring).

    Args:
        settings: ``Settings`` (``relay.auth``, ``relay.rateLimit``, ``relay.maxBodyBytes``, ``soul.jwt``).
        engram: where keys, API keys, revocations and Policies live.
        limiter: rate limiter (default: the shared ``ratelimit`` actor when Ray is up, else local).
        clock: epoch seconds (tests move it).
        refresh_s: revocations are re-read this often in the background (visible within seconds).
        max_stale_s: a request waits for the re-read when the revocation list is older than this.
        apikey_cache_s: API key records (and unknown ids) are cached this long (revocation is seen
            sooner, via the list).
        audit_flush_s: audit events are written in one lineage segment per this interval.
        refusals_per_client: refusal events per client address (and subject) per window; the
            refusals past it are summed up in one event when the window ends.
        refusal_window_s: that window.
        unknown_keys_per_client: ENGRAM reads of API key ids never found on this replica that one
            client address may cause per window; past it such ids get 429 without a read.
        unknown_key_window_s: that window.
    """

    def __init__(
        self,
        settings: Any,
        engram: Engram,
        *,
        limiter: Any = None,
        clock: Callable[[], float] = time.time,
        refresh_s: float = 1.0,
        max_stale_s: float = 5.0,
        apikey_cache_s: float = 30.0,
        audit_flush_s: float = 0.5,
        refusals_per_client: int = 20,
        refusal_window_s: float = 60.0,
        unknown_keys_per_client: int = 30,
        unknown_key_window_s: float = 60.0,
    ) -> None:
        from mnemos.trace.lineage import LineageWriter

        self.settings = settings
        self.engram = engram
        self.enabled = bool(settings.relay.auth)
        self.issuer = settings.soul.jwt.issuer
        self.max_body_bytes = int(settings.relay.max_body_bytes)
        limit = settings.relay.rate_limit
        self.default_limit = (float(limit.requests_per_second), int(limit.burst))
        self.clock = clock
        self.keyring = KeyRing.from_settings(settings, engram, clock=clock)
        self.store = IdentityStore(engram, self.keyring, issuer=self.issuer)
        self._limiter = limiter
        self.apikey_cache_s = apikey_cache_s
        self.audit_flush_s = audit_flush_s
        self._keys = RefreshingValue(self.keyring.public_keys, refresh_s=60.0, max_stale_s=600.0, what="signing keys")
        self._jwks = RefreshingValue(self.keyring.jwks, refresh_s=10.0, max_stale_s=60.0, what="JWKS")
        self._revoked = RefreshingValue(
            self.store.revoked_ids, refresh_s=refresh_s, max_stale_s=max_stale_s, what="revocations"
        )
        self._limits = RefreshingValue(
            self._load_limit_rules, refresh_s=5.0, max_stale_s=60.0, what="rate-limit policies"
        )
        self._kid_reloads = TokenBucket(rate=2.0, burst=5)
        self._apikeys = _ApiKeyRecords(self.store.api_key, apikey_cache_s)
        self._lookups = _LookupBudget(unknown_keys_per_client, unknown_key_window_s)
        self._lineage = LineageWriter(engram)
        self._flush_task: asyncio.Task[None] | None = None
        self._refusals = _RefusalThrottle(refusals_per_client, refusal_window_s)
        self._summary_task: asyncio.Task[None] | None = None

    # -- the one entry point -------------------------------------------------------------------
    async def admit(self, request: Request, verb: str) -> Principal:
        """Authenticate, authorize ``verb``, take a rate-limit token, check the body size.

        When RELAY's edge middleware already admitted this request (``admit_headers``), the
        principal it stored is reused: only ``verb`` is authorized here (no second rate-limit
        token, the body already checked).
        """
        if request.scope["path"] in PUBLIC_PATHS:  # (``request.url`` would parse the Host header for it)
            return Principal.anonymous(role="viewer")
        admitted = admitted_principal(request.scope)
        if admitted is not None:
            self.authorize(request, admitted, verb)
            return admitted
        principal = await self.admit_headers(request, verb)
        await self.check_body(request)
        return principal

    async def admit_headers(self, request: Request, verb: str | None) -> Principal:
        """What can be decided from the headers alone, in order: authenticate, authorize
        ``verb`` (``None``: the route authorizes itself later), rate-limit. Stores the principal
        in the request's scope so that a later ``admit`` reuses it; never reads the body."""
        if self.enabled:
            try:
                principal = await self.authenticate(request)
            except (AuthenticationError, RateLimitError) as exc:  # (429: over the budget of unknown keys)
                self._audit_refusal(request, exc)
                raise
            if verb is not None:
                self.authorize(request, principal, verb)
        else:
            principal = Principal.anonymous()
        await self.rate_limit(principal)
        request.scope.setdefault("state", {})[ADMITTED_KEY] = principal
        return principal

    def authorize(self, request: Request, principal: Principal, verb: str) -> None:
        """``authorize(principal, verb)``, with the refusal audited (anonymous principals of a
        guard with auth off are admins and pass)."""
        try:
            authorize(principal, verb)
        except PermissionDeniedError as exc:
            self._audit_refusal(request, exc, principal, verb)
            raise

    def refused(self, request: Request, exc: MnemosError, principal: Principal | None, verb: str) -> None:
        """Count and audit a 403 decided after the edge, as the edge's own: a Policy's access rules or
        the credential's model list refusing a model (``model_not_allowed``)."""
        self._audit_refusal(request, exc, principal, verb)

    # -- authentication ------------------------------------------------------------------------
    async def authenticate(self, request: Request) -> Principal:
        """The principal of ``Authorization: Bearer <JWT | mk_… API key>``."""
        headers = request.headers.getlist("authorization")
        if len(headers) > 1:  # proxies and servers disagree on which one counts: none does
            raise AuthenticationError(
                f"the request has {len(headers)} Authorization headers: send one", param="authorization"
            )
        header = headers[0] if headers else None
        if not header:
            raise AuthenticationError(
                "missing credentials: send 'Authorization: Bearer <token or API key>'", param="authorization"
            )
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthenticationError(
                "the Authorization header must be 'Bearer <token or API key>'", param="authorization"
            )
        principal = await self.verify_credential(credential, request.client.host if request.client else "")
        if principal.audience == CONSOLE_AUDIENCE and not request.scope.get(CONSOLE_BEARER):
            raise AuthenticationError(  # a copied session cookie: the console's, not a key to the API
                "this token is a console session's: it works in the console (/ui) only; use an API key, or "
                "a token from POST /v1/tokens", param="authorization")  # fmt: skip
        return principal

    async def verify_credential(self, credential: str, client: str | None = None) -> Principal:
        """The principal of a bare JWT or API key (``AuthenticationError`` when refused); with the
        ``client`` address, an API key id never found here spends its budget of look-ups first
        (``RateLimitError`` when spent)."""
        if is_api_key(credential):
            return await self._verify_api_key(credential, client)
        return await self._verify_jwt(credential)

    async def revoked(self, credential_id: str) -> None:
        """``credential_id`` was just revoked through this replica: re-read the revocations now, so
        this replica refuses it from the next request (the others within ``refresh_s``)."""
        if credential_id not in await self._revoked.refresh():  # it joined a reload begun before the revoke
            await self._revoked.refresh()

    async def _verify_jwt(self, token: str) -> Principal:
        keys = await self._keys.get()
        revoked = await self._revoked.get()
        try:
            return verify_token(token, keys, issuer=self.issuer, now=self.clock(), is_revoked=revoked.__contains__)
        except UnknownKeyError:
            # A rotation since the last load: re-read the keys, then decide. Reloads are themselves
            # rate-limited so that tokens naming random kids cannot make every request hit ENGRAM.
            if not self._kid_reloads.take():
                raise
            keys = await self._keys.refresh()
            return verify_token(token, keys, issuer=self.issuer, now=self.clock(), is_revoked=revoked.__contains__)

    async def _verify_api_key(self, credential: str, client: str | None) -> Principal:
        key_id, secret = parse_api_key(credential)
        charged = client if client is not None and self._apikeys.new_read(key_id) else None
        if charged is not None:
            self._lookups.take(charged)  # before the read, so that concurrent requests cannot overrun it
        record = await self._apikeys.get(key_id)
        if charged is not None and record is not None:
            self._lookups.give(charged)  # a real key: its look-up is not charged
        revoked = await self._revoked.get()
        return verify_api_key(record, key_id, secret, now=self.clock(), revoked=key_id in revoked)

    # -- rate limits ---------------------------------------------------------------------------
    @property
    def limiter(self) -> Any:
        if self._limiter is None:
            from mnemos.soul.ratelimit import default_limiter

            self._limiter = default_limiter(self.engram)
        return self._limiter

    def _load_limit_rules(self) -> list[LimitRule]:
        from mnemos.genome import Registry

        rules: list[LimitRule] = []
        for policy in Registry(self.engram).list("Policy"):
            limit = getattr(policy.spec, "rate_limit", None)
            if limit is not None:
                rules.append((frozenset(limit.principals), limit.requests_per_second, limit.burst, policy.name))
        return sorted(rules, key=lambda r: r[3])

    async def limit_for(self, principal: Principal) -> tuple[float, int]:
        """``(rate, burst)``: a Policy naming the subject (or ``role:<role>``), else a Policy for
        all principals (not for an admin: such a Policy of 0.001 requests/s locked every admin out,
        the fix of the Policy through the gateway too), else ``relay.rateLimit``."""
        rate, burst, _ = await self._rule_for(principal)
        return rate, burst

    async def _rule_for(self, principal: Principal) -> tuple[float, int, str]:
        """``limit_for`` and the name of the setting it comes from (a refusal's ``param``):
        ``policy <name>.rateLimit`` or ``relay.rateLimit``."""
        rules = await self._limits.get()
        names = {principal.subject, f"role:{principal.role}"}
        for principals, rate, burst, policy in rules:
            if principals & names:
                return rate, burst, f"policy {policy}.rateLimit"
        if principal.role != "admin":  # an admin is limited by a Policy that names it, else relay.rateLimit
            for principals, rate, burst, policy in rules:
                if not principals:
                    return rate, burst, f"policy {policy}.rateLimit"
        return (*self.default_limit, "relay.rateLimit")

    async def rate_limit(self, principal: Principal) -> None:
        """Take one token of the principal's bucket or raise ``RateLimitError`` (429, ``param``: the
        setting of the limit, ``retry_after``: when a token is there, at least 0.01 s)."""
        rate, burst, param = await self._rule_for(principal)
        try:
            await self.limiter.acquire(principal.subject, rate, burst)
        except RateLimitError as exc:
            from mnemos.soul.ratelimit import MIN_RETRY_S
            from mnemos.trace import metrics

            metrics.RATELIMITED.inc(principal_kind=principal.kind)
            wait = max(exc.retry_after, MIN_RETRY_S)
            raise RateLimitError(
                f"rate limit of {rate:g} requests/s ({param}) exceeded for {principal.subject!r}; "
                f"retry after {wait:.2f}s",
                param=param, retry_after=wait,
            ) from None  # fmt: skip

    # -- body size -----------------------------------------------------------------------------
    async def check_body(self, request: Request) -> None:
        """413 when ``Content-Length`` or the body actually sent exceeds ``relay.maxBodyBytes``.

        The body is read here (at most limit + one chunk) and left cached on ``request``.
        """
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise BadRequestError("Content-Length is not a number", param="content-length") from None
            if size > limit:
                raise PayloadTooLargeError(
                    f"request body of {size} bytes exceeds the limit of {limit} bytes", param="body"
                )
        cached = getattr(request, "_body", None)
        if cached is not None:
            size = len(cached)
        else:
            chunks: list[bytes] = []
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    break
                chunks.append(chunk)
            if size <= limit:
                request._body = b"".join(chunks)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes", param="body")

    # -- JWKS ----------------------------------------------------------------------------------
    async def jwks(self) -> dict[str, Any]:
        """The public JSON Web Key Set (cached for a few seconds)."""
        return await self._jwks.get()

    # -- audit ---------------------------------------------------------------------------------
    def _audit_refusal(
        self, request: Request, exc: MnemosError, principal: Principal | None = None, verb: str | None = None
    ) -> None:
        from mnemos.trace import metrics

        metrics.RELAY_AUTH_FAILURES.inc(reason=_refusal_reason(exc))
        host = request.client.host if request.client else None
        who = principal.describe() if principal is not None else {}
        subject = principal.subject if principal is not None else None
        written, due = self._refusals.take((str(host), subject), who, time.monotonic())
        self._record_summaries(due)
        if written:
            attrs: dict[str, Any] = {
                "action": "auth.refused",
                "status": exc.status,
                "reason": _cut(exc.message),
                "method": _cut(request.method),
                "path": _cut(request.url.path),
                "client": host,
            }
            if principal is not None:
                attrs.update(who, verb=verb)
            self._lineage.record(audit_id(), "audit", **attrs)
        elif self._summary_task is None or self._summary_task.done():
            self._summary_task = asyncio.ensure_future(self._summarize_later())
        if written or due:
            self._schedule_flush()

    def _record_summaries(self, due: _Due) -> None:
        window_s = self._refusals.window_s
        for (host, _), window in due:
            reason = f"… and {window.dropped} more refusals from {host} in the last {window_s:g} s"
            attrs: dict[str, Any] = {"action": "auth.refused", "reason": reason, "more": window.dropped, "client": host}
            self._lineage.record(audit_id(), "audit", **attrs, **window.who)

    async def _summarize_later(self) -> None:
        """Write the summaries of windows as they end (while any refusal waits for one)."""
        while self._refusals.pending():
            await asyncio.sleep(self._refusals.window_s)
            self._record_summaries(self._refusals.ended(time.monotonic()))
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.audit_flush_s)
        await asyncio.to_thread(self._lineage.flush)

    async def flush_audit(self) -> int:
        """Write buffered audit events now; returns how many."""
        return await asyncio.to_thread(self._lineage.flush)

    async def aclose(self) -> None:
        """Write the pending refusal summaries, flush audit events (call on shutdown)."""
        for task in (self._flush_task, self._summary_task):
            if task is not None and not task.done():
                task.cancel()
        self._record_summaries(self._refusals.ended(time.monotonic(), every=True))
        await self.flush_audit()


def _refusal_reason(exc: MnemosError) -> str:
    """The ``reason`` label of ``mnemos_relay_auth_failures_total`` for a refusal (a fixed few)."""
    if isinstance(exc, PermissionDeniedError):
        return "forbidden"
    if isinstance(exc, RateLimitError):  # the budget of look-ups of API keys never seen
        return "too_many_unknown_keys"
    return "unauthenticated"
