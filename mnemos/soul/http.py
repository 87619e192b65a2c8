"""SOUL's HTTP routes, for RELAY to include: JWKS and identity management.

- ``GET /.well-known/jwks.json`` (public): the signing keys' public parts;
- ``POST /v1/tokens`` (``manage-identities``): ``{name, role, ttl?, scopes?, apiKey?, team?, limits?,
  models?}`` → the new credential (``created_answer``: ``id, kind, name, role, scopes, expiresAt, team,
  limits, models``), its secret shown once (``token`` or ``apiKey``); ``mnemos token create -o json`` prints
  the same. A ``scope`` the role does not hold is a 422 (``param: scopes``: a scope only narrows a
  role), and so is a ``ttl`` under 1 s or over 100 years (``store.MIN_TTL_S``, ``store.MAX_TTL_S``). ``limits`` is
  ``{rpm, tpm, budget: {amount, tokens, window}}`` as ``mnemos token create --rpm --tpm --budget``
  takes it (a bad value: 422 naming ``body.limits.rpm`` …). A credential mints only at or below itself:
  the new one's verbs (role narrowed by scopes) must all be the caller's (else 403), a JWT lives at
  most ``soul.policies.maxTokenTTL`` (else 422), nothing minted outlives the credential that mints
  it (else 403: an expiring caller must give a ``ttl`` that ends in time), a caller with a team mints
  only into its team (its own by default; another: 403), and a caller with limits of its own mints
  only within them (each of rpm, tpm and budget at most the caller's, a budget window at least as
  long; what is left out is the caller's; else 403), and a caller with a model list mints only
  within it (the new list a subset, the caller's when left out; else 403). A name is one principal: a name that a
  credential of another team (or of none) carries is 409 (``check_name_taken``). Each credential
  has its own counters: to cap what a group spends together, set team limits (a Policy), which
  nothing a team member mints escapes;
- ``GET /v1/tokens`` (``manage-identities``): active credentials (``?all=true``: also revoked/expired);
- ``DELETE /v1/tokens/{id}`` (``manage-identities``): revoke a token or an API key.

On ``/v1/tokens*`` a query parameter the route does not take (``?al=true``, a typo of ``all``), or
one given twice, is a 422 naming it (``mnemos._http.declared_query``), checked once the caller is
admitted (a caller without a credential learns nothing of the routes' parameters).

Whose credentials a caller manages (``manages``): a caller whose credential carries a team lists and
revokes only credentials of its team, and itself (its own credential and those it was made from);
any other id is a 404, the answer for an id that does not exist. A caller without a team (the
bootstrap admin, unscoped admins) manages every credential. No caller revokes a credential that
holds a verb it lacks (``check_revocable``, 403): a team's scoped admin cannot revoke a full admin.

The routes find the guard at ``request.app.state.soul_guard``; ``install(app, guard)`` sets it,
includes the router and renders ``MnemosError`` as JSON (RELAY may do that itself). Errors are
answered here in the OpenAI error shape, with ``Retry-After`` on 429 and ``WWW-Authenticate`` on 401.
"""

from __future__ import annotations

import math
from typing import Any, cast

from fastapi import APIRouter, FastAPI, Path
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from mnemos._http import JSONResponse, declared_query
from mnemos._model import CoreModel, Duration, json_body, positive_duration_schema
from mnemos.errors import (
    ConflictError,
    MnemosError,
    PermissionDeniedError,
    RateLimitError,
    UnavailableError,
    ValidationError,
)
from mnemos.genome.metering import UsageLimits
from mnemos.soul.edge import EdgeGuard
from mnemos.soul.identity import MAX_MODELS, Principal, check_models
from mnemos.soul.limits import check_key_limits
from mnemos.soul.rbac import check_role, check_scopes_held, verbs_of
from mnemos.soul.store import MAX_TTL_S, MIN_TTL_S, CreatedCredential, check_ttl, not_found
from mnemos.soul.tokens import LEEWAY_SECONDS, MAX_PARENTS

__all__ = [
    "TokenCreate",
    "check_mint_models",
    "check_mint_scope",
    "check_minting",
    "check_revocable",
    "create_token",
    "created_answer",
    "error_response",
    "guard_of",
    "install",
    "jwks",
    "list_tokens",
    "manages",
    "revoke_token",
    "router",
]

router = APIRouter()
_IDENTITIES = {"x-mnemos-verb": "manage-identities"}
_CREDENTIAL_ID = r"^(tok-[0-9a-f]{12}|[0-9a-f]{16})$"  # as IdentityStore.revoke checks it


class TokenCreate(CoreModel):
    """Body of ``POST /v1/tokens``."""

    name: str = Field(description="The principal's name (the token's subject).")
    role: str = Field(description="admin, operator, developer or viewer.")
    ttl: Duration | None = Field(None, description="Lifetime ('1h'); default: soul.policies.tokenTTL for tokens, "
                                 "never for API keys.")
    scopes: list[str] = Field(default_factory=list, description="Verbs the credential is limited to.")
    api_key: bool = Field(False, description="Create an API key instead of a JWT.")
    team: str = Field("", pattern=r"^[A-Za-z0-9_.@:-]{0,128}$",
                      description="The team (team limits, budgets and usage); default: the caller's team.")
    limits: UsageLimits | None = Field(
        None, description="The credential's own requests and tokens per minute and budget (what is left out: "
        "the caller's own, if it has limits).")  # fmt: skip
    models: list[str] | None = Field(
        None, max_length=MAX_MODELS, description="The only models the credential may call (its model list); "
        "left out: the caller's own list, or any model when the caller has none.")  # fmt: skip


def check_minting(
    principal: Principal, body: TokenCreate, *, max_token_ttl: float, default_token_ttl: float, now: float
) -> float | None:
    """The ttl to mint with, once ``body`` is at or below ``principal`` (see the module docstring).

    Raises:
        PermissionDeniedError: a verb the caller lacks, or a lifetime past the caller's own.
        ValidationError: an unknown role or scope, a scope the role does not hold, a ttl under
            ``MIN_TTL_S`` or over ``MAX_TTL_S`` (100 years), or a JWT ttl over ``max_token_ttl``.
    """
    check_role(body.role)
    scopes = check_scopes_held(body.role, body.scopes)
    check_ttl(body.ttl)
    wanted = verbs_of(body.role, scopes)
    held = verbs_of(principal.role, principal.scopes)
    beyond = sorted(wanted - held)
    if beyond:
        raise PermissionDeniedError(
            f"a credential may mint only credentials at or below its own role and scopes: role {body.role!r}"
            f"{' with scopes ' + ', '.join(scopes) if scopes else ''} holds {', '.join(beyond)}, which the caller "
            f"(role {principal.role!r}) lacks; ask for a lower role or narrower scopes",
            param="role" if not scopes else "scopes",
        )
    ttl = body.ttl
    if not body.api_key:
        ttl = default_token_ttl if ttl is None else ttl
        if ttl > max_token_ttl:
            raise ValidationError(
                f"ttl: {ttl:g} s is longer than soul.policies.maxTokenTTL ({max_token_ttl:g} s)", param="ttl"
            )
    if principal.expires_at is not None:
        remaining = principal.expires_at - now
        # Verifiers accept a JWT up to LEEWAY_SECONDS past its exp, an API key not a moment past its
        # expiry: a JWT minted by an API key ends that much sooner, so that it is refused no later.
        longest = remaining - LEEWAY_SECONDS if not body.api_key and principal.kind == "apikey" else remaining
        if ttl is None or ttl > longest:
            extra = f" less the {LEEWAY_SECONDS:g} s a token is accepted past its expiry" if longest < remaining else ""
            raise PermissionDeniedError(
                f"ttl: the new credential may not outlive the caller's, which expires in {max(0, int(remaining))} s; "
                f"give a ttl at most that long{extra} ({max(0, int(longest))} s)",
                param="ttl",
            )
    return ttl


def check_mint_scope(principal: Principal, body: TokenCreate) -> tuple[str, dict[str, Any] | None]:
    """``(team, limits)`` to mint with, once they are within the caller's (see the module docstring).

    Raises:
        PermissionDeniedError: another team than the caller's, or limits above the caller's own.
        ValidationError: a bad team name or limits value (names ``team``, ``limits.rpm`` …).
    """
    team = body.team
    if principal.team:
        if team and team != principal.team:
            raise PermissionDeniedError(
                f"team: a credential of team {principal.team!r} may mint credentials of that team only", param="team"
            )
        team = principal.team
    held = principal.limits
    if held is None:
        return team, body.limits.dump() if body.limits is not None else None
    # As sent (an explicit null included): what it leaves out is the caller's.
    given = body.limits.model_dump(mode="json", exclude_unset=True) if body.limits is not None else {}
    own = held.dump()
    merged = {**own, **given}
    if own.get("budget") and isinstance(given.get("budget"), dict):
        merged["budget"] = {**own["budget"], **given["budget"]}
    merged = check_key_limits(merged)
    _within(type(held).model_validate(merged), held)
    return team, merged


def check_mint_models(principal: Principal, body: TokenCreate) -> tuple[str, ...]:
    """The model list to mint with: ``body.models`` checked and within the caller's own list (when it
    has one; left out, the caller's); a caller without a list mints any (see the module docstring).

    Raises:
        PermissionDeniedError: a model beyond the caller's list, or an empty list from a caller with one.
        ValidationError: a malformed name (names ``models[i]``).
    """
    if body.models is None:
        return principal.models
    wanted = check_models(body.models)
    if not principal.models:
        return wanted
    beyond = [m for m in wanted if m not in principal.models]
    if beyond or not wanted:
        shown = f"names {', '.join(map(repr, beyond[:5]))}, which the caller's does not" if beyond else \
            "is empty (any model), beyond the caller's"  # fmt: skip
        raise PermissionDeniedError(f"models: the new credential's model list {shown}; a credential mints only "
                                    "within its own model list", param="models")  # fmt: skip
    return wanted


def _lineage(principal: Principal) -> tuple[str, ...]:
    """The ``par`` of a JWT ``principal`` mints: its credential, then its own parents, nearest first. Past
    ``MAX_PARENTS`` the farthest (the API key at the root) is kept with the nearest."""
    chain = tuple(p for p in (principal.credential_id, *principal.parents) if p)
    return chain if len(chain) <= MAX_PARENTS else (*chain[: MAX_PARENTS - 1], chain[-1])


def check_name_taken(store: Any, principal: Principal, name: str, team: str) -> None:
    """Refuse a name that is another principal's. A name is one principal: its jobs, runs, spaces,
    usage and rate limits go by it, so a credential minted under a name some credential of another
    team (or of none) carries, revoked ones included, would be that principal (409). ``anonymous``
    and ``local:<user>`` stand for callers without a credential, and audit records name a
    credential's holder ``apikey:<name>`` or ``token:<name>`` (422: a principal named
    ``apikey:alice`` would read alice's audit events as its own). A caller with a team is not told
    which team holds the name."""
    if name == "anonymous" or name.startswith("local:"):
        raise ValidationError(f"name: {name!r} stands for callers without a credential (anonymous, local:<user>): "
                              "choose another name", param="name")  # fmt: skip
    if name.lower().startswith(("apikey:", "token:", "anonymous:")):
        raise ValidationError(f"name: {name[:80]!r} starts as audit records name a credential's holder "
                              "(apikey:, token:, anonymous:): choose another name", param="name")  # fmt: skip
    teams = {str(doc.get("team") or "") for doc in store.list(include_inactive=True) if doc.get("name") == name}
    if not teams or team in teams:
        return
    held = "outside your team" if principal.team else " and ".join(
        f"of team {t!r}" if t else "of no team" for t in sorted(teams))  # fmt: skip
    raise ConflictError(f"name: {name!r} is a principal {held}; a name is one principal (its jobs, runs, spaces, "
                        "usage and limits go by it): choose another name", param="name")  # fmt: skip


def _within(wanted: Any, held: Any) -> None:
    """403 naming the first of ``wanted``'s limits (``UsageLimits``) that grants more than ``held``'s."""
    checks = [("limits.rpm", wanted.rpm, held.rpm), ("limits.tpm", wanted.tpm, held.tpm)]
    if held.budget is not None:
        budget = wanted.budget
        checks += [("limits.budget.amount", budget and budget.amount, held.budget.amount),
                   ("limits.budget.tokens", budget and budget.tokens, held.budget.tokens)]  # fmt: skip
        if budget is not None and budget.window < held.budget.window:  # the same amount, more often
            raise PermissionDeniedError(
                f"limits.budget.window: {budget.window:g} s is shorter than the caller's own budget window "
                f"({held.budget.window:g} s); a credential mints only within its own limits",
                param="limits.budget.window",
            )
    for path, value, cap in checks:
        if cap is not None and (value is None or value > cap):
            raise PermissionDeniedError(
                f"{path}: {'unlimited' if value is None else f'{value:g}'} is beyond the caller's own limit "
                f"({cap:g}); a credential mints only within its own limits",
                param=path,
            )


def manages(principal: Principal, doc: dict[str, Any]) -> bool:
    """Whether ``principal`` lists and revokes the stored credential ``doc`` (see the module docstring):
    without a team, every one; with a team, those of its team and itself."""
    if not principal.team:
        return True
    own = {principal.credential_id, *principal.parents} - {""}
    return doc.get("id") in own or str(doc.get("team") or "") == principal.team


def check_revocable(principal: Principal, doc: dict[str, Any]) -> None:
    """Raise unless every verb of the credential ``doc`` is the caller's (a credential revokes only at
    or below itself, as it mints).

    Raises:
        PermissionDeniedError: ``doc`` holds a verb the caller lacks (names ``id``).
    """
    theirs = verbs_of(str(doc.get("role") or ""), doc.get("scopes") or ())
    beyond = sorted(theirs - verbs_of(principal.role, principal.scopes))
    if beyond:
        raise PermissionDeniedError(
            f"credential {doc.get('id')!r} (role {doc.get('role')!r}) holds {', '.join(beyond)}, which the caller "
            f"(role {principal.role!r}) lacks; a credential revokes only credentials at or below its own role and "
            "scopes",
            param="id",
        )


def error_response(exc: MnemosError) -> JSONResponse:
    """``exc`` as an HTTP response: OpenAI error body, ``Retry-After`` (whole seconds, at least 1)
    on 429, ``WWW-Authenticate: Bearer`` on 401."""
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="mnemos"'
    return JSONResponse(exc.to_openai(), status_code=exc.status, headers=headers)


def guard_of(request: Request) -> EdgeGuard:
    """The app's ``EdgeGuard`` (``app.state.soul_guard``)."""
    guard = getattr(request.app.state, "soul_guard", None)
    if guard is None:
        raise UnavailableError("SOUL is not installed on this app (app.state.soul_guard is unset)")
    return guard


@router.get("/.well-known/jwks.json", include_in_schema=True)
async def jwks(request: Request) -> Response:
    try:
        keys = await guard_of(request).jwks()
    except MnemosError as exc:
        return error_response(exc)
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=60"})


def _token_body() -> dict[str, Any]:
    """``TokenCreate``'s JSON Schema with the roles and verbs the handler accepts (for /openapi.json)."""
    from mnemos.genome.admission import MAX_BUDGET_WINDOW_S, MIN_BUDGET_WINDOW_S
    from mnemos.soul.rbac import ROLES, VERBS

    schema = TokenCreate.model_json_schema(by_alias=True)
    schema["properties"]["role"]["enum"] = list(ROLES)
    schema["properties"]["name"]["pattern"] = r"^[A-Za-z0-9_.@:-]{1,128}$"  # as IdentityStore's check_name
    # A budget window of a new credential is MIN_BUDGET_WINDOW_S..MAX_BUDGET_WINDOW_S (check_key_limits: 422)
    schema["$defs"]["Budget"]["properties"]["window"].update(minimum=MIN_BUDGET_WINDOW_S, maximum=MAX_BUDGET_WINDOW_S)
    schema["$defs"]["Budget"]["properties"]["window"].pop("exclusiveMinimum", None)
    schema["properties"]["scopes"]["items"] = {"enum": sorted(VERBS)}
    # Duration: seconds, or a string such as "1h", from MIN_TTL_S to MAX_TTL_S (100 years, an API key's
    # longest). A JWT's longest is soul.policies.maxTokenTTL, a setting, so a ttl the schema allows may
    # still be refused for a JWT (422), as one that outlives the caller's credential is (403).
    ttl = positive_duration_schema()
    ttl[0] = {"type": "number", "minimum": MIN_TTL_S, "maximum": MAX_TTL_S}
    schema["properties"]["ttl"]["anyOf"] = ttl
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"description": "the body is not a JSON object"},
    403: {"description": "the caller lacks manage-identities, or asks for (or revokes) more than it holds"},
    404: {"description": "no credential with that id (or not one the caller manages)"},
    409: {"description": "the name is another principal's (a credential of another team carries it)"},
    422: {"description": "a field failed validation"},
}


@router.post("/v1/tokens", openapi_extra={**_IDENTITIES, **_token_body()}, status_code=201,
             responses={201: {"description": "the new credential, its secret shown once"},
                        **{c: _ANSWERS[c] for c in (400, 403, 409, 422)}})  # fmt: skip
async def create_token(request: Request) -> Response:
    try:
        guard = guard_of(request)
        principal = await guard.admit(request, "manage-identities")
        await declared_query(request)  # once the caller is admitted: ?foo=1 is a 422, never ignored
        body = json_body(TokenCreate, await request.body(), prefix="body",
                         content_type=request.headers.get("content-type", ""))
        policies = guard.settings.soul.policies
        ttl = check_minting(principal, body, max_token_ttl=float(policies.max_token_ttl),
                            default_token_ttl=float(policies.token_ttl), now=guard.clock())  # fmt: skip
        team, limits = check_mint_scope(principal, body)
        models = check_mint_models(principal, body)
        await _in_thread(check_name_taken, guard.store, principal, body.name, team)
        actor = f"{principal.kind}:{principal.subject}"
        if body.api_key:
            created = await _in_thread(guard.store.create_api_key, body.name, body.role, ttl=ttl, scopes=body.scopes,
                                       actor=actor, team=team, limits=limits, models=models)  # fmt: skip
        else:  # a JWT dies with the credential that minted it (and that one's own parents): revoking a leaked key
            created = await _in_thread(guard.store.create_token, body.name, body.role, ttl=ttl, scopes=body.scopes,
                                       actor=actor, team=team, limits=limits, models=models,
                                       parents=_lineage(principal))  # fmt: skip
    except MnemosError as exc:
        return error_response(exc)
    answer = created_answer(created, team=team, limits=limits, models=models)
    return JSONResponse(answer, status_code=201, headers={"Cache-Control": "no-store"})


def created_answer(created: CreatedCredential, *, team: str, limits: dict[str, Any] | None,
                   models: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    """A credential just created, as ``POST /v1/tokens`` answers it and ``mnemos token create -o json``
    prints it: its public fields (camelCase), the ``team``, ``limits`` and ``models`` it was made with
    (as stored), and its secret, once, as ``token`` (a JWT) or ``apiKey``."""
    doc = _camel({**created.public(), "team": team, "limits": check_key_limits(limits) if limits else None,
                  "models": list(models)})  # fmt: skip
    doc["apiKey" if created.kind == "apikey" else "token"] = created.secret
    return doc


@router.get("/v1/tokens", openapi_extra=_IDENTITIES, responses={c: _ANSWERS[c] for c in (403, 422)})
async def list_tokens(request: Request, all: bool = False) -> Response:  # noqa: A002 - the query name
    try:
        guard = guard_of(request)
        principal = await guard.admit(request, "manage-identities")
        await declared_query(request)  # ?al=true (a typo of all) or ?all=true&all=false: a 422
        items = await _in_thread(guard.store.list, include_inactive=all)
        items = [doc for doc in items if manages(principal, doc)]
    except MnemosError as exc:
        return error_response(exc)
    return JSONResponse({"object": "list", "data": [_camel(d) for d in items]})


@router.delete("/v1/tokens/{credential_id}", openapi_extra=_IDENTITIES,
               responses={c: _ANSWERS[c] for c in (403, 404, 422)})  # fmt: skip
async def revoke_token(request: Request, credential_id: str = Path(..., json_schema_extra={"pattern": _CREDENTIAL_ID},
                       description="tok-<12 hex> (a token) or 16 hex digits (an API key's id).")) -> Response:
    try:
        guard = guard_of(request)
        principal = await guard.admit(request, "manage-identities")
        await declared_query(request)
        stored = await _in_thread(guard.store.get, credential_id)
        if not manages(principal, stored):
            raise not_found(credential_id)  # another team's: as if it did not exist
        check_revocable(principal, stored)
        doc = await _in_thread(guard.store.revoke, credential_id, actor=f"{principal.kind}:{principal.subject}")
        await guard.revoked(credential_id)
    except MnemosError as exc:
        return error_response(exc)
    return JSONResponse(_camel(doc))


async def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(fn, *args, **kwargs)


def _camel(doc: dict[str, Any]) -> dict[str, Any]:
    from pydantic.alias_generators import to_camel

    return {to_camel(k): v for k, v in doc.items()}


def install(app: FastAPI, guard: EdgeGuard) -> FastAPI:
    """Mount SOUL on ``app``: the guard in ``app.state.soul_guard``, the router, and a handler
    turning any ``MnemosError`` a route raises into ``error_response``."""
    app.state.soul_guard = guard
    app.include_router(router)

    async def _handle(request: Request, exc: Exception) -> Response:
        return error_response(cast(MnemosError, exc))  # registered for MnemosError only

    app.add_exception_handler(MnemosError, _handle)
    return app
