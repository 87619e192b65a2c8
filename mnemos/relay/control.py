"""RELAY's control-plane API: everything the CLI and ``mnemos.connect(url)`` do, over HTTP.

Resources, Kubernetes-shaped (``plural`` is the kind in lower case, plural: ``models``,
``policies``, ``adapters``, ``functions``, ``pipelines``)::

    GET    /apis/{group}/{version}/{plural}                  list            read-artifacts
    POST   /apis/{group}/{version}/{plural}[?generation=N]   apply           apply
    POST   /apis/{group}/{version}/{plural}:validate         schema+admission, nothing stored
    POST   /apis/{group}/{version}/{plural}:diff             what an apply would change
    GET    /apis/{group}/{version}/{plural}/{name}[?generation=N]            read-artifacts
    PUT    /apis/{group}/{version}/{plural}/{name}[?generation=N]   apply    apply
    DELETE /apis/{group}/{version}/{plural}/{name}[?generation=N]   delete   apply
    GET    /apis/{group}/{version}/{plural}/{name}/history                   read-artifacts
    GET    /apis/{group}/{version}/schemas/{kind}            JSON Schema     read-artifacts

Optimistic concurrency: a write that names the generation it read (``?generation=N``, or on PUT
the body's ``metadata.generation``) is answered 409 when the resource moved on; ``0`` means
"must not exist". As HTTP has it (RFC 9110), ``GET`` of a resource answers its generation as its
``ETag`` (``"3"``), and ``PUT``, ``DELETE`` and ``POST`` to the collection (for the resource its
body names) take ``If-Match: "3"`` (quoted or bare; a list; ``*``: any live generation), answered
412 when the resource moved on. Writes go through the
``genome`` actor (one serialized writer per platform, on top of the registry's atomic create per
generation), which also tells the controllers.

Platform: ``GET /v1/status``, ``GET /v1/whoami``, ``GET /v1/lineage/{id}`` (read-lineage: by the
ownership rule of jobs and runs, see ``LineageReader``), ``GET /v1/spaces``,
``POST /v1/spaces/{space}/search``, ``PUT /v1/files/{digest}`` (apply: a pipeline's files, the
bytes of ``spec.files``; ``GET`` says whether one is stored), and secrets (``apply``: admins and
operators), whose values are write-only: ``GET /v1/secrets``, ``GET /v1/secrets/{name}`` (key names),
``PUT /v1/secrets/{name}/{key}`` ``{"value": …}``, ``DELETE /v1/secrets/{name}[/{key}]``.
Tokens and API keys are SOUL's ``/v1/tokens``.

SOUL decides every call before its body is read (``EdgeMiddleware``; each route declares its verb
in ``openapi_extra``). Every change is an ``audit`` event in lineage naming the principal.
Errors have the OpenAI shape ``{"error": {message, type, param, code}}``. A query parameter a
route does not take (``?foo=1``), or one given twice, is a 422 naming it, never ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
import types
from collections.abc import Callable
from enum import Enum
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field

from mnemos._http import declared_query
from mnemos._model import CoreModel, parse_json, require_json_media, validate_json
from mnemos.config import Settings
from mnemos.engram import Engram
from mnemos.errors import (
    BadRequestError,
    ConflictError,
    MnemosError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from mnemos.genome import KINDS, NAME_PATTERN, Registry, Resource, json_schema, parse_resource
from mnemos.genome.registry import plural_of
from mnemos.relay._edge import VERB_KEY
from mnemos.relay._errors import pattern_hint, unwrap
from mnemos.relay.openai_schema import ErrorResponse
from mnemos.soul.rbac import verbs_of

__all__ = ["LineageReader", "ResourceList", "SearchRequest", "SecretValue", "build_router"]

_NAME = NAME_PATTERN
_GROUP = r"^[a-z0-9]([-a-z0-9.]{0,62}[a-z0-9])?$"
_VERSION = r"^v[0-9]+([a-z]+[0-9]*)?$"
_PLURAL = r"^[a-z]{1,63}$"
_SECRET = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_DIGEST = r"^sha256:[0-9a-f]{64}$"
for _pattern, _hint in ((_NAME, "a valid name: at most 253 lowercase letters, digits, '-' and '.', starting and "
                                "ending with a letter or digit"),
                        (_GROUP, "an API group, such as genome.mnemos.dev"), (_VERSION, "an API version, such as v1"),
                        (_PLURAL, "a kind's plural in lower case, such as models"),
                        (_SECRET, "a secret name or key: 1 to 128 letters, digits, '_', '.' and '-', starting with "
                                  "a letter or digit"),
                        (_DIGEST, "a file's digest: 'sha256:' and the 64 lowercase hex digits of its bytes' "
                                  "sha256")):  # fmt: skip
    # said where a path's part fails it, not the expression's text; a secret's name or key not quoted back
    pattern_hint(_pattern, _hint, echo=_pattern != _SECRET)
_ERROR = {"model": ErrorResponse}
_DESCRIPTIONS = {
    400: "malformed body (not JSON, not an object)",
    401: "no, or an invalid, credential",
    403: "the credential's role or scopes lack the verb, or admission refused the resource",
    404: "unknown kind, resource or generation",
    409: "the resource is not at the generation the request names",
    412: "the resource is not at the generation If-Match names",
    413: "body over relay.maxBodyBytes",
    422: "a field (path, query or body) failed validation; `param` names it",
    429: "over the principal's rate limit",
    503: "the control plane is not running",
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer (with the auth ones)."""
    return {c: {**_ERROR, "description": _DESCRIPTIONS[c]} for c in sorted({401, 403, 429, *codes})}


def _verb(verb: str) -> dict[str, Any]:
    return {VERB_KEY: verb}


_TABLE: dict[tuple[str, str], str] = {(cls.API_VERSION, plural_of(kind)): kind for kind, cls in KINDS.items()}


def _kind(group: str, version: str, plural: str) -> str:
    kind = _TABLE.get((f"{group}/{version}", plural))
    if kind is None:
        valid = ", ".join(sorted(f"/apis/{gv}/{p}" for gv, p in _TABLE))
        raise NotFoundError(f"no resource type at /apis/{group}/{version}/{plural}; valid: {valid}", param="plural")
    return kind


class ResourceList(CoreModel):
    """A list answer: ``{"object": "list", "data": [...]}``."""

    object: str = Field("list", description="Always 'list'.")
    data: list[dict[str, Any]] = Field(description="The items.")


class StoredFile(CoreModel):
    """A file ENGRAM holds by digest (``/v1/files/{digest}``)."""

    digest: str = Field(description="sha256:<hex> of its bytes.")
    size: int = Field(description="Its size in bytes.")


class SecretValue(CoreModel):
    """Body of ``PUT /v1/secrets/{name}/{key}``: the value, never returned."""

    value: str = Field(min_length=1, max_length=65536, description="The secret value (write-only).")


class SearchRequest(CoreModel):
    """Body of ``POST /v1/spaces/{space}/search``."""

    query: str = Field(min_length=1, max_length=8192, description="Text to search for, by meaning.")
    k: int = Field(5, ge=1, le=1000, description="How many items.")


_RESOURCE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["metadata", "spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object", "required": ["name"]},
                        "spec": {"type": "object"},
                    },
                    "description": "A resource document; `GET /apis/{group}/{version}/schemas/{kind}` gives its "
                    "full JSON Schema. apiVersion and kind default to the path's.",
                }
            }
        },
    }
}


_FILE_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}  # fmt: skip


def _body_of(model: type[CoreModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise BadRequestError("a JSON request body is required", param="body")
    require_json_media(request.headers.get("content-type", ""))
    return parse_json(raw, "body")


def _model_body(model: type[CoreModel], doc: Any) -> Any:
    """``doc`` (parsed JSON) as ``model``, strictly: ``"k": "3"`` is a 422 naming ``k``, not 3."""
    if not isinstance(doc, dict):
        raise BadRequestError("the request body must be a JSON object ({...})", param="body")
    return validate_json(model, doc)


def _parse(doc: Any, kind: str, name: str | None = None) -> Resource:
    """The body as a resource of ``kind``: apiVersion and kind default to the path's and must match it."""
    if not isinstance(doc, dict):
        raise BadRequestError("the request body must be a JSON object (a resource document)", param="body")
    api_version = KINDS[kind].API_VERSION
    doc = {"apiVersion": api_version, "kind": kind, **doc}
    if doc["kind"] != kind:
        raise ValidationError(f"kind: {repr(doc['kind'])[:100]} does not belong under {plural_of(kind)}; send it to "
                              "its own path or fix the kind", param="kind")  # fmt: skip
    resource = parse_resource(doc)
    if name is not None and resource.name != name:
        raise ValidationError(f"metadata.name: {resource.name!r} does not match the path's name {name!r}",
                              param="metadata.name")  # fmt: skip
    return resource


def _expected(query: int | None, body_generation: int | None = None) -> int | None:
    if query is not None and body_generation is not None and query != body_generation:
        raise ValidationError(f"generation: the query says {query} and metadata.generation says {body_generation}; "
                              "send one", param="generation")  # fmt: skip
    return query if query is not None else body_generation


class PreconditionFailedError(ConflictError):
    """An ``If-Match`` precondition failed: the resource is not at the generation it names (412)."""

    status = 412
    code = "precondition_failed"


_TAG = re.compile(r'^"?([0-9]{1,10})"?$')


def _if_match(request: Request) -> list[int] | None:
    """The generations an ``If-Match`` header names (``None``: no header; ``[]``: ``*``, any)."""
    header = request.headers.get("if-match")
    if header is None:
        return None
    if header.strip() == "*":
        return []
    wanted = []
    for tag in header.split(","):
        tag = tag.strip()
        match = _TAG.fullmatch(tag)
        if match:
            wanted.append(int(match.group(1)))
        elif not tag.startswith("W/"):  # a weak tag never matches If-Match (strong comparison)
            raise ValidationError(f'If-Match: {tag[:40]!r} is not a generation ("3", 3, a list of them, or *)',
                                  param="If-Match")  # fmt: skip
    if not wanted:
        raise PreconditionFailedError("If-Match: a weak tag (W/…) never matches; send the generation as \"N\"",
                                      param="If-Match")  # fmt: skip
    return wanted


def _etag(response: Response, doc: dict[str, Any]) -> None:
    generation = (doc.get("metadata") or {}).get("generation")
    if generation is not None:
        response.headers["ETag"] = f'"{generation}"'


def _actor(principal: Any) -> dict[str, Any]:
    """Who acts, for audit events (names and roles only)."""
    if principal is None:
        return {"actor": "anonymous", "role": "admin"}
    return {"actor": f"{principal.kind}:{principal.subject}", "role": principal.role}


class LineageReader:
    """A caller as a reader of lineage (``mnemos.trace.lineage.LineageReader``), by the rule of jobs
    and runs: a developer sees their own runs, steps, jobs and requests only, and the artifacts those
    made (another's is not found, as on ``/v1/jobs`` and ``/v1/runs``; TRACE finds an artifact's
    owner as CORTEX's ``parents`` check does); viewers see every one's metadata; data (a run's
    params, error texts, a request's caller and usage, an item's text) and audit events are read by
    their owner, operators and admins (``mnemos.soul.ownership``).

    Args:
        principal: the caller (``None``: authentication is off, the local admin).
    """

    def __init__(self, principal: Any) -> None:
        self.principal = principal

    def sees(self, owner: str | None) -> bool:
        if getattr(self.principal, "role", "admin") != "developer":
            return True
        return bool(owner) and owner == getattr(self.principal, "subject", None)

    def reads(self, owner: str | None) -> bool:
        from mnemos.soul.ownership import reads_data

        return reads_data(self.principal, owner)

    def shown_error(self, error: Any) -> Any:
        from mnemos.soul.ownership import withheld_error

        return withheld_error(error)


class _ActorGone(Exception):
    """The ``genome`` actor handle is dead."""


class _Control:
    """What the routes share: settings, the store, the ``genome`` actor, audit."""

    def __init__(self, settings: Settings, engram: Engram, governor: Any = None) -> None:
        self.settings = settings
        self.engram = engram
        self.registry = Registry(engram, require_gitops=settings.cradle.guardrails.require_gitops)
        self.governor = governor  # SOUL's limits, for the routes that run a model (space search)
        self._genome: Any = None

    async def genome(self) -> Any:
        if self._genome is None:
            from mnemos.genome.service import ensure

            self._genome = await asyncio.to_thread(ensure, self.settings, self.engram)
        return self._genome

    async def write(self, method: str, *args: Any) -> Any:
        """Call the ``genome`` actor; its errors arrive as ours. An actor that died (or was replaced)
        is looked up again once."""
        try:
            return await self._call(method, *args)
        except _ActorGone:
            self._genome = None
        try:
            return await self._call(method, *args)
        except _ActorGone:
            self._genome = None
            raise UnavailableError("the registry's writer (the genome actor) is not available; retry") from None

    async def _call(self, method: str, *args: Any) -> Any:
        actor = await self.genome()
        try:
            return await getattr(actor, method).remote(*args)
        except Exception as exc:  # noqa: BLE001 - Ray wraps what the actor raised
            cause = unwrap(exc)
            if isinstance(cause, MnemosError):
                raise cause from None
            if type(exc).__name__ in ("RayActorError", "ActorDiedError", "ActorUnavailableError"):
                raise _ActorGone() from exc
            raise

    async def audit(self, principal: Any, action: str, **attrs: Any) -> None:
        from mnemos.soul._audit import audit

        await asyncio.to_thread(audit, self.engram, action, **_actor(principal), **attrs)

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)


_SPOOL_BYTES = 4 * 1024 * 1024
"""An upload is written to its spool file (and hashed) in pieces of about this size, off the loop."""


async def _spool(request: Request, path: str) -> tuple[str, int]:
    """Write the request's body to ``path`` as it arrives: its ``sha256:`` digest and size."""
    digest, size, pending = hashlib.sha256(), 0, bytearray()

    def write(fh: Any, data: bytearray) -> None:
        digest.update(data)
        fh.write(data)

    with open(path, "wb") as fh:
        async for chunk in request.stream():
            pending += chunk
            if len(pending) >= _SPOOL_BYTES:
                await asyncio.to_thread(write, fh, pending)
                size, pending = size + len(pending), bytearray()
        await asyncio.to_thread(write, fh, pending)
    return "sha256:" + digest.hexdigest(), size + len(pending)


def build_router(edge: Any, settings: Settings, engram: Engram, *,
                 status: Callable[[], dict[str, Any]] | None = None, governor: Any = None) -> APIRouter:  # fmt: skip
    """The control-plane routes.

    Args:
        edge: has ``await admit(request, verb)`` returning the principal (``None`` with auth off).
        settings: the platform's settings.
        engram: the platform's ENGRAM root.
        status: extra fields for ``GET /v1/status`` (the gateway's model statuses).
        governor: the limits a space search spends (the gateway's; default: a new one).
    """
    api = APIRouter(dependencies=[Depends(declared_query)])  # ?foo=1 (a typo) is a 422, never ignored
    ctl = _Control(settings, engram, governor)
    group_p = Path(..., pattern=_GROUP, description="API group, e.g. genome.mnemos.dev.")
    version_p = Path(..., pattern=_VERSION, description="API version, e.g. v1.")
    plural_p = Path(..., pattern=_PLURAL, description="Kind, plural, lower case: models, policies, ….")
    name_p = Path(..., pattern=_NAME, description="metadata.name (DNS-1123).")
    gen_q = Query(None, ge=0, le=2**31, description="Precondition: the generation the caller read (0: absent).")
    resources: list[str | Enum] = ["resources"]

    # -- resources: the `:verb` and schema routes first (their paths would match the others) ----------
    @api.post("/apis/{group}/{version}/{plural}:validate", tags=resources, openapi_extra={**_verb("read-artifacts"),
              **_RESOURCE_BODY}, responses=_responses(400, 404, 413, 422))  # fmt: skip
    async def validate_resource(request: Request, group: str = group_p, version: str = version_p,
                                plural: str = plural_p) -> dict[str, Any]:  # fmt: skip
        """Schema and admission checks of one document; nothing is stored."""
        await edge.admit(request, "read-artifacts")
        kind = _kind(group, version, plural)
        resource = _parse(await _json(request), kind)
        await ctl.read(ctl.registry.admit, resource)
        return {"valid": True, "kind": kind, "name": resource.name}

    @api.post("/apis/{group}/{version}/{plural}:diff", tags=resources, openapi_extra={**_verb("read-artifacts"),
              **_RESOURCE_BODY}, responses=_responses(400, 404, 413, 422))  # fmt: skip
    async def diff_resource(request: Request, group: str = group_p, version: str = version_p,
                            plural: str = plural_p) -> dict[str, Any]:  # fmt: skip
        """What applying one document would change: ``create``, ``configure`` or ``unchanged``, with a
        unified diff of the YAML. A document ``apply`` would refuse (its checks, a Policy) is refused
        here as ``:validate`` refuses it, not shown as a change that would be made."""
        await edge.admit(request, "read-artifacts")
        resource = _parse(await _json(request), _kind(group, version, plural))
        await ctl.read(ctl.registry.admit, resource)
        from mnemos.wraith.gitops import diff

        entry = (await ctl.read(diff, types.SimpleNamespace(registry=ctl.registry), [resource]))[0]
        return {"kind": entry.kind, "name": entry.name, "action": entry.action, "diff": entry.diff}

    @api.get("/apis/{group}/{version}/schemas/{kind}", tags=resources, openapi_extra=_verb("read-artifacts"),
             responses=_responses(404, 422))  # fmt: skip
    async def get_schema(request: Request, group: str = group_p, version: str = version_p,
                         kind: str = Path(..., pattern=r"^[A-Za-z]{1,63}$")) -> dict[str, Any]:  # fmt: skip
        """The JSON Schema of a kind."""
        await edge.admit(request, "read-artifacts")
        return json_schema(kind)

    @api.get("/apis/{group}/{version}/{plural}", tags=resources, response_model=ResourceList,
             openapi_extra=_verb("read-artifacts"), responses=_responses(404, 422))  # fmt: skip
    async def list_resources(request: Request, group: str = group_p, version: str = version_p,
                             plural: str = plural_p) -> dict[str, Any]:  # fmt: skip
        """The live resources of a kind, by name."""
        await edge.admit(request, "read-artifacts")
        kind = _kind(group, version, plural)
        return {"object": "list", "data": [r.dump() for r in await ctl.read(ctl.registry.list, kind)]}

    async def _matched(kind: str, name: str, wanted: list[int], named: int | None) -> int:
        """The generation a write must find under ``If-Match`` (``wanted``; ``[]``: ``*``), which must
        agree with one the request names otherwise (``named``: ``?generation=``, the body's)."""
        if named is not None:
            if (wanted and named not in wanted) or (not wanted and named == 0):
                raise ValidationError(f"If-Match: it names {', '.join(map(str, wanted)) or '*'} and the request "
                                      f"names generation {named}; send one", param="If-Match")  # fmt: skip
            return named
        if len(wanted) == 1 and wanted[0] > 0:
            return wanted[0]  # checked by the registry, in the write itself
        try:
            live = (await ctl.read(ctl.registry.get, kind, name)).generation
        except NotFoundError:
            live = None
        if live is None or (wanted and live not in wanted):
            now = f"at generation {live}" if live else "absent"
            raise PreconditionFailedError(
                f"{kind.lower()}/{name} is {now}, not what If-Match names; get it again and re-apply your change",
                param="If-Match",
                current_generation=live,
            )
        return int(live)

    async def _precondition(write: Any, wanted: list[int] | None) -> Any:
        """``write()``; with ``If-Match``, a resource that moved on is 412 (not 409)."""
        try:
            return await write()
        except ConflictError as exc:
            if wanted is None or exc.param != "metadata.generation":
                raise
            raise PreconditionFailedError(exc.message, param="If-Match", **exc.details) from None

    async def _apply(request: Request, kind: str, name: str | None, generation: int | None,
                     response: Response) -> dict[str, Any]:  # fmt: skip
        principal = await edge.admit(request, "apply")
        wanted = _if_match(request)
        resource = _parse(await _json(request), kind, name)
        expected = _expected(generation, resource.generation if name is not None else None)
        if wanted is not None:  # on the collection too: the body names the resource
            expected = await _matched(kind, resource.name, wanted, expected)
        doc = resource.dump()
        doc["metadata"].pop("generation", None)
        doc["metadata"].pop("creationTimestamp", None)
        result = await _precondition(lambda: ctl.write("apply", doc, "api", expected), wanted)
        stored = result["resource"]
        _etag(response, stored)
        if result["action"] != "unchanged":
            await ctl.audit(principal, "resource.applied", kind=kind, name=resource.name,
                            generation=stored["metadata"]["generation"], result=result["action"])  # fmt: skip
        return {"action": result["action"], "resource": stored}

    write_responses = _responses(400, 404, 409, 412, 413, 422, 503)

    @api.post("/apis/{group}/{version}/{plural}", tags=resources, openapi_extra={**_verb("apply"), **_RESOURCE_BODY},
              responses=write_responses)  # fmt: skip
    async def apply_resource(request: Request, response: Response, group: str = group_p, version: str = version_p,
                             plural: str = plural_p, generation: int | None = gen_q) -> dict[str, Any]:  # fmt: skip
        """Apply a document: ``{"action": created|configured|unchanged, "resource": …}``. ``If-Match``
        is a precondition on the resource the body names, as on ``PUT`` (412 when it moved on)."""
        return await _apply(request, _kind(group, version, plural), None, generation, response)

    # If-Match is read from the request, not published as a parameter: a generated request cannot
    # know the generation a resource is at, and 412 is its answer to one that is not.
    @api.put("/apis/{group}/{version}/{plural}/{name}", tags=resources,
             openapi_extra={**_verb("apply"), **_RESOURCE_BODY}, responses=_responses(400, 404, 409, 412, 413, 422,
                                                                                       503))  # fmt: skip
    async def put_resource(request: Request, response: Response, group: str = group_p, version: str = version_p,
                           plural: str = plural_p, name: str = name_p,
                           generation: int | None = gen_q) -> dict[str, Any]:  # fmt: skip
        """Apply one named resource; ``metadata.generation`` in the body and ``If-Match`` are
        preconditions too (a generation that moved on: 409, or 412 for ``If-Match``)."""
        return await _apply(request, _kind(group, version, plural), name, generation, response)

    @api.get("/apis/{group}/{version}/{plural}/{name}", tags=resources, openapi_extra=_verb("read-artifacts"),
             responses=_responses(404, 422))  # fmt: skip
    async def get_resource(request: Request, response: Response, group: str = group_p, version: str = version_p,
                           plural: str = plural_p, name: str = name_p,
                           generation: int | None = Query(None, ge=1, le=2**31, description="A past generation.")
                           ) -> dict[str, Any]:  # fmt: skip
        """The live (or a given) generation of a resource; its ``ETag`` is the generation (``"3"``)."""
        await edge.admit(request, "read-artifacts")
        kind = _kind(group, version, plural)
        doc: dict[str, Any] = (await ctl.read(ctl.registry.get, kind, name, generation)).dump()
        _etag(response, doc)
        return doc

    @api.get("/apis/{group}/{version}/{plural}/{name}/status", tags=resources, openapi_extra=_verb("read-artifacts"),
             responses=_responses(404, 422))  # fmt: skip
    async def get_status(request: Request, group: str = group_p, version: str = version_p, plural: str = plural_p,
                         name: str = name_p) -> dict[str, Any]:  # fmt: skip
        """A Model's observed status (``mnemos describe model``): phase, reason and message, ready and
        desired replicas, the served generation and digest, its conditions and its recent events."""
        from mnemos.relay.model_status import status_view

        await edge.admit(request, "read-artifacts")
        kind = _kind(group, version, plural)
        if kind != "Model":
            raise NotFoundError(f"/apis/{group}/{version}/{plural}/{name}/status: only models have a status",
                                param="plural")  # fmt: skip
        await ctl.read(ctl.registry.get, kind, name, None)  # 404 for a Model that does not exist
        return await ctl.read(status_view, ctl.engram, name)

    @api.delete("/apis/{group}/{version}/{plural}/{name}", tags=resources, openapi_extra=_verb("apply"),
                responses=_responses(404, 409, 412, 422, 503))  # fmt: skip
    async def delete_resource(request: Request, group: str = group_p, version: str = version_p,
                              plural: str = plural_p, name: str = name_p,
                              generation: int | None = gen_q) -> dict[str, Any]:  # fmt: skip
        """Delete a resource (its history stays); answers the generation that was live. ``If-Match``
        is a precondition as on ``PUT``."""
        principal = await edge.admit(request, "apply")
        kind = _kind(group, version, plural)
        wanted = _if_match(request)
        if wanted is not None:
            generation = await _matched(kind, name, wanted, generation)
        doc = await _precondition(lambda: ctl.write("delete", kind, name, "api", generation), wanted)
        await ctl.audit(principal, "resource.deleted", kind=kind, name=name, generation=doc["metadata"]["generation"])
        return {"action": "deleted", "resource": doc}

    @api.get("/apis/{group}/{version}/{plural}/{name}/history", tags=resources, response_model=ResourceList,
             openapi_extra=_verb("read-artifacts"), responses=_responses(404, 422))  # fmt: skip
    async def resource_history(request: Request, group: str = group_p, version: str = version_p,
                               plural: str = plural_p, name: str = name_p) -> dict[str, Any]:  # fmt: skip
        """Every stored generation, oldest first."""
        await edge.admit(request, "read-artifacts")
        kind = _kind(group, version, plural)
        return {"object": "list", "data": [r.dump() for r in await ctl.read(ctl.registry.history, kind, name)]}

    _platform_routes(api, edge, ctl, status)
    return api


def _cluster_nodes() -> list[dict[str, Any]]:
    """The Ray cluster's nodes (none when this process is not on Ray, e.g. a test app)."""
    import ray

    from mnemos.neuron.nodes import cluster_nodes

    return cluster_nodes() if ray.is_initialized() else []


def _platform_routes(api: APIRouter, edge: Any, ctl: _Control, status: Callable[[], dict[str, Any]] | None) -> None:
    """Status, lineage, spaces and secrets."""
    secret_p = Path(..., pattern=_SECRET, description="Secret name.")
    key_p = Path(..., pattern=_SECRET, description="Key inside the secret.")

    @api.get("/v1/status", tags=["platform"], openapi_extra=_verb("read-artifacts"), responses=_responses())
    async def platform_status(request: Request) -> dict[str, Any]:
        """The platform at a glance: resources per kind, the cluster's nodes (alive/dead), served models."""
        principal = await edge.admit(request, "read-artifacts")
        counts: dict[str, int] = {}
        for resource in await ctl.read(ctl.registry.list):
            counts[type(resource).__name__] = counts.get(type(resource).__name__, 0) + 1
        nodes = await asyncio.to_thread(_cluster_nodes)
        if principal is not None and "apply" not in verbs_of(principal.role, principal.scopes):
            nodes = [{k: v for k, v in n.items() if k != "address"} for n in nodes]  # addresses: operators only
        return {"object": "status", "resources": counts, "nodes": nodes, **(status() if status else {})}

    @api.get("/v1/whoami", tags=["platform"], openapi_extra=_verb("read-artifacts"), responses=_responses())
    async def whoami(request: Request) -> dict[str, Any]:
        """The caller as the gateway sees it: subject, role, credential kind and scopes (no secret)."""
        principal = await edge.admit(request, "read-artifacts")
        if principal is None:
            return {"subject": "anonymous", "role": "admin", "kind": "anonymous", "scopes": []}
        return {"subject": principal.subject, "role": principal.role, "kind": principal.kind,
                "scopes": list(principal.scopes)}  # fmt: skip

    @api.get("/v1/lineage/{node_id:path}", tags=["platform"], openapi_extra=_verb("read-lineage"),
             responses=_responses(404, 422))  # fmt: skip
    async def lineage(request: Request, node_id: str = Path(..., min_length=1, max_length=512),
                      limit: int = Query(5000, ge=1, le=100_000)) -> dict[str, Any]:  # fmt: skip
        """The lineage graph (upstream and downstream) of a run, job, request, artifact or space item.

        A developer's graph holds their own runs, steps, jobs and requests only (another's id is 404,
        as an unknown one); a node whose data the caller does not read keeps its metadata only."""
        principal = await edge.admit(request, "read-lineage")
        from mnemos.soul.ownership import reads_space
        from mnemos.synkron.spaces import LINEAGE_RESOLVERS, space_owner
        from mnemos.trace.lineage import graph

        try:
            if node_id.startswith("space:"):  # an item of a space the caller does not search: as no such space
                space = node_id[len("space:") :].partition("/")[0]
                _source, owner, team = await ctl.read(space_owner, ctl.engram, space)
                if not reads_space(principal, owner, team):
                    raise NotFoundError(f"space {space!r} not found", param="space")
            reader = LineageReader(principal)
            found: dict[str, Any] = await ctl.read(
                lambda: graph(ctl.engram, node_id, limit=limit, resolvers=LINEAGE_RESOLVERS, reader=reader)
            )
        except NotFoundError as exc:  # the path part is ``node_id``, as its 422 (over 512 characters) names it
            raise NotFoundError(exc.message, param="node_id") from None
        return found

    def spaces() -> Any:
        from mnemos.synkron.spaces import SpacesAPI

        return SpacesAPI(types.SimpleNamespace(engram=ctl.engram, registry=ctl.registry, connected=True),
                         local_models=False)  # fmt: skip  # a search never loads a model into the gateway

    @api.get("/v1/spaces", tags=["platform"], response_model=ResourceList, openapi_extra=_verb("read-artifacts"),
             responses=_responses())  # fmt: skip
    async def list_spaces(request: Request) -> dict[str, Any]:
        """The embedding spaces the caller lists: items, model, owner, the run that wrote it.

        A developer's own, their team's and the shared (ownerless) ones; everyone else's: all
        (``mnemos.soul.ownership.reads_space``)."""
        principal = await edge.admit(request, "read-artifacts")
        return {"object": "list", "data": await ctl.read(lambda: spaces().list(principal=principal))}

    @api.post("/v1/spaces/{space}/search", tags=["platform"], response_model=ResourceList,
              openapi_extra={**_verb("infer"), **_body_of(SearchRequest)},
              responses={**_responses(400, 404, 413, 422, 503), 409: {**_ERROR, "description": "the model served "
                         "under the space's model name embeds in other dimensions: index it again"}})  # fmt: skip
    async def search_space(request: Request, space: str = Path(..., pattern=_NAME)) -> dict[str, Any]:
        """The ``k`` items of a space closest in meaning to ``query`` (verb ``infer``: the query is
        embedded by the space's model). A space the caller may not search (another developer's,
        not of their team) is 404, the answer for one that does not exist; 409 when the model now
        served under the space's model name embeds in other dimensions (index the space again)."""
        from mnemos.soul.limits import Governor, ModelMeter, estimate_tokens
        from mnemos.synkron.spaces import load_manifest

        principal = await edge.admit(request, "infer")
        body = _model_body(SearchRequest, await _json(request))
        model = ((await ctl.read(load_manifest, ctl.engram, space, principal)).get("model") or {}).get("name")
        if not model:  # a manifest some other writer left without its model
            raise NotFoundError(f"space {space!r} records no embedding model: run the index step that writes it again",
                                param="space")  # fmt: skip
        if ctl.governor is None:
            ctl.governor = Governor(ctl.engram)
        # the query is embedded by the model: metered like /v1/embeddings, on the caller's limits
        meter = await ctl.read(lambda: ModelMeter(ctl.engram, principal, model, governor=ctl.governor))
        async with meter.call(estimate_tokens(body.query)) as settle:
            hits, tokens = await ctl.read(lambda: spaces().search_counted(space, body.query, body.k,
                                                                         principal=principal))  # fmt: skip
            settle(tokens)
        return {"object": "list", "data": hits}

    file_digest = Path(..., pattern=_DIGEST, description="sha256:<hex> of the file's bytes")

    @api.get("/v1/files/{digest}", tags=["platform"], response_model=StoredFile, openapi_extra=_verb("apply"),
             responses=_responses(404, 422))  # fmt: skip
    async def stored_file(request: Request, digest: str = file_digest) -> dict[str, Any]:
        """Whether ENGRAM holds the bytes of ``digest`` (verb ``apply``): its size, or 404. The
        remote client asks (``HEAD`` works too) before it uploads a pipeline's file, and sends
        only the files the platform lacks."""
        await edge.admit(request, "apply")
        try:
            return {"digest": digest, "size": await ctl.read(ctl.engram.size, digest)}
        except NotFoundError:  # the store's own message names its URI
            raise NotFoundError(f"digest: no file {digest} is stored: upload its bytes with PUT /v1/files/{digest}",
                                param="digest") from None  # fmt: skip

    @api.put("/v1/files/{digest}", tags=["platform"], response_model=StoredFile,
             openapi_extra={**_verb("apply"), **_FILE_BODY},
             responses={**_responses(422), 413: {**_ERROR, "description": "file over relay.maxFileBytes"}})  # fmt: skip
    async def upload_file(request: Request, digest: str = file_digest) -> dict[str, Any]:
        """Store the bytes of a file by their ``digest`` (verb ``apply``): the remote client sends
        each file a pipeline's ``spec.files`` names, and each file of a model folder it registers.
        The body is the file, at most ``relay.maxFileBytes`` (else 413 naming the digest, the
        setting and its value: raise it, or store the file in ENGRAM/S3 and pass its ref); it is
        spooled to a temporary file as it arrives, so a model's weights never sit in memory.
        Bytes that hash to another digest are 422 and stored nowhere. Storing a file again is a
        no-op (ENGRAM is content-addressed)."""
        principal = await edge.admit(request, "apply")
        with tempfile.TemporaryDirectory(prefix="mnemos-upload-") as folder:
            spool = os.path.join(folder, "file")
            actual, size = await _spool(request, spool)
            if actual != digest:
                raise ValidationError(f"digest: the body's digest is {actual}, not {digest}: send the file's bytes "
                                      "unchanged, under the digest of those bytes", param="digest")  # fmt: skip
            await ctl.read(lambda: ctl.engram.put_file(spool, digest=digest))
        await ctl.audit(principal, "file.uploaded", digest=digest, size=size)
        return {"digest": digest, "size": size}

    def store() -> Any:
        from mnemos.soul.secrets import secret_store

        return secret_store(None, ctl.settings)

    async def in_store(fn: Callable[..., Any], name: str, key: str | None = None) -> Any:
        """``fn(name[, key])`` on the store; a missing secret is a 404 naming the path's ``name``,
        a missing key of one that exists the path's ``key`` (the store names ``secretRef``, a
        resource's field, which this route has not)."""
        try:
            return await ctl.read(fn, name, *((key,) if key is not None else ()))
        except NotFoundError as exc:
            missing = "name"
            if key is not None:
                try:
                    await ctl.read(store().list, name)
                    missing = "key"
                except NotFoundError:
                    pass
            raise NotFoundError(exc.message, param=missing) from None

    @api.get("/v1/secrets", tags=["secrets"], response_model=ResourceList, openapi_extra=_verb("apply"),
             responses=_responses())  # fmt: skip
    async def list_secrets(request: Request) -> dict[str, Any]:
        """Secret names (never values)."""
        await edge.admit(request, "apply")
        return {"object": "list", "data": [{"name": n} for n in await ctl.read(lambda: store().list(None))]}

    @api.get("/v1/secrets/{name}", tags=["secrets"], openapi_extra=_verb("apply"), responses=_responses(404, 422))
    async def secret_keys(request: Request, name: str = secret_p) -> dict[str, Any]:
        """The key names of one secret (never values)."""
        await edge.admit(request, "apply")
        return {"name": name, "keys": await in_store(store().list, name)}

    @api.put("/v1/secrets/{name}/{key}", tags=["secrets"], openapi_extra={**_verb("apply"), **_body_of(SecretValue)},
             responses=_responses(400, 413, 422))  # fmt: skip
    async def set_secret(request: Request, name: str = secret_p, key: str = key_p) -> dict[str, Any]:
        """Set one key of a secret; the value is never returned, logged or audited."""
        principal = await edge.admit(request, "apply")
        body = _model_body(SecretValue, await _json(request))
        secrets = store()
        await ctl.read(secrets.set, name, key, body.value)
        await ctl.audit(principal, "secret.set", store=secrets.kind, name=name, key=key)
        return {"name": name, "key": key, "store": secrets.kind}

    async def _delete_secret(request: Request, name: str, key: str | None) -> dict[str, Any]:
        principal = await edge.admit(request, "apply")
        secrets = store()
        await in_store(secrets.delete, name, key)
        await ctl.audit(principal, "secret.deleted", store=secrets.kind, name=name, key=key)
        return {"name": name, "key": key, "deleted": True}

    @api.delete("/v1/secrets/{name}", tags=["secrets"], openapi_extra=_verb("apply"), responses=_responses(404, 422))
    async def delete_secret(request: Request, name: str = secret_p) -> dict[str, Any]:
        """Delete a whole secret."""
        return await _delete_secret(request, name, None)

    @api.delete("/v1/secrets/{name}/{key}", tags=["secrets"], openapi_extra=_verb("apply"),
                responses=_responses(404, 422))  # fmt: skip
    async def delete_secret_key(request: Request, name: str = secret_p, key: str = key_p) -> dict[str, Any]:
        """Delete one key of a secret."""
        return await _delete_secret(request, name, key)
