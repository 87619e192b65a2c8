"""CORTEX over HTTP: ``/v1/jobs`` (a FastAPI router the RELAY gateway includes).

    POST   /v1/jobs                 {"function": "<Function name>", "kwargs": {...}, "queue": …}
    GET    /v1/jobs?queue=&status=&limit=&after=   a page, newest first: {data, first_id, last_id, has_more}
    GET    /v1/jobs:stats           queues, pools and job counts (no job's data)
    GET    /v1/jobs/{id}?wait=<s>   the job; with ``wait`` it answers when finished (at most 300 s)
    DELETE /v1/jobs/{id}            cancel
    POST   /v1/jobs/{id}/retry      submit a failed or cancelled job again: the new job
    GET    /v1/jobs/{id}/logs

Query parameters are checked, never ignored: an unknown one, a ``queue`` that is not a queue name
or not one of ``settings.cortex.queues``, a ``status`` that is not a job status, a ``limit``,
``after`` or ``wait`` out of bounds is 422 naming it. An ``{id}`` that cannot be a job id is 404,
as a job that does not exist.

What code may run (see ``docs/guides/security.md``):

- ``function`` names a registered ``Function`` (GENOME, applied by someone with ``apply``): verb
  ``submit``, the caller's role in its ``allowedRoles`` (else 403), ``kwargs`` valid against its
  ``parameters`` schema (else 422 naming the argument), no positional ``args``;
- ``function`` is a ``module:function`` reference, or the body carries a cloudpickled ``payload``
  (base64 of ``(fn, args, kwargs)``, what ``client.jobs.submit(fn)`` sends): verb ``execute``,
  which equals cluster root (admin and operator only).

What a body may ask for: ``priority`` within -1000..1000 and ``maxAttempts`` within 1..20 (else
422 naming the field); a ``queue`` declared in ``settings.cortex.queues``, named in the body or by
its Function's ``queue`` (else 422 naming ``queue``, listing the declared ones); a ``priority``
above 100 is reserved for operators and admins (403). The platform's internal queues
(``INTERNAL_QUEUES``: ``wraith``, where WRAITH's maintenance tasks run) take jobs from operators
and admins only: a job of another role that would go to one, named in the body or by its
Function's ``queue``, is 403 naming ``queue`` (so no developer can crowd out compaction,
retention or backups). Each of ``parents`` must be a lineage node that exists and whose data
the caller reads (its owner — a job's, a run's, or for a step or artifact the nearest job, run
or request it came from — is the caller, or the caller is an operator or admin; a node nobody
owns, such as a model, is shared); otherwise 404 naming ``parents[i]``, the same for a node that
does not exist and one of another's.
A ``timeout`` is at most 30 days (else 422 naming ``timeout``). Label keys are Kubernetes label
keys (an optional DNS-subdomain prefix and ``/``, then a name of 1-63 characters), values at most
63 characters; a key whose prefix is ``mnemos.dev`` or ends in ``.mnemos.dev`` is MNEMOS's (each a
422 naming ``labels.<key>``): the gateway sets ``mnemos.dev/team`` to the caller's team, which
Policy quotas ``per: team`` count, and SYNKRON ``synkron.mnemos.dev/run`` and ``…/step`` on its
step jobs (through CORTEX's Python API, not this route).

Ownership: a job's ``owner`` is the subject of the principal that submitted it. Developers list,
read, read logs of, cancel and retry their own jobs only — another's is 404, as if it did not exist;
viewers list and read every job but not its logs (403), and cancel or retry none (403); operators and
admins do everything. A retry runs again what the job ran: a caller without the verb ``execute``
retries only a job whose ``function`` is still the entrypoint of a registered Function their role
may call, with no pickle (else 403 naming ``function``), and arguments that still fit its
``parameters`` (422). Everyone reads ``/v1/jobs:stats``: counts, no job's data.
What a job holds of its data — its result's value and its error text — is shown to its owner,
operators and admins only: to a viewer a job is its metadata (status, owner, timings, the result's
encoding, size and digest, the error's exception class), and ``withheld`` names what was left out
(``result.value``, ``error``), see ``mnemos.soul.ownership``.
Errors have the OpenAI shape (``{"error": {message, type, param, code}}``).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from mnemos._http import JSONResponse, check_query
from mnemos._model import json_body, positive_duration_schema, to_validation_error
from mnemos.cortex.job import (
    _JOB_ID,
    MAX_JOB_TIMEOUT_S,
    MAX_LABEL_VALUE,
    MAX_LIST_LIMIT,
    MAX_SUBMITTED_LABELS,
    RESERVED_LABEL_PATTERN,
    STEP_JOB_ID,
    TEAM_LABEL,
    JobOptions,
    JobSubmission,
    check_submitted_label,
    shown_id,
)
from mnemos.errors import (
    ConflictError,
    MnemosError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
    ValidationError,
)
from mnemos.genome import LABEL_KEY_PATTERN, NAME_PATTERN
from mnemos.neuron.codec import REFERENCE, validate_reference
from mnemos.trace.http import PRINCIPAL_ATTRIBUTE
from mnemos.trace.telemetry import SpanKind, inject, span

__all__ = [
    "INTERNAL_QUEUES",
    "JobCall",
    "build_router",
    "check_queue",
    "cortex_handle",
    "job_for",
    "router",
    "withhold_job",
]

_MAX_WAIT = 300.0
PRIORITY_RESERVED_ABOVE = 100
"""Priorities above this are for operators and admins (their work can always go first)."""
_PRIORITY_ROLES = frozenset({"admin", "operator"})
INTERNAL_QUEUES = frozenset({"wraith"})
"""Queues the platform runs its own work on (``mnemos.wraith.scheduler.QUEUE``): operators and admins only."""
_MAX_PARENTS = 32
# No whitespace after the kind: Python's \s and JSON Schema's (ECMA-262) differ on U+001C-U+001F, U+0085 and
# U+FEFF, so these are named too and the published pattern refuses what this one does.
_PARENT = re.compile(r"^(job|run|step|artifact|model|resource|file|request|space):[^\s\x1c-\x1f\x85\ufeff]{1,500}$")
_SUBMIT = {"x-mnemos-verb": "submit"}
_READ = {"x-mnemos-verb": "read-artifacts"}
# Statuses of the routes themselves (RELAY's edge adds 401/403/429 and the error body's schema).
_Responses = dict[int | str, dict[str, Any]]
_NO_JOB: _Responses = {404: {"description": "no such job (or not the caller's)"},
                       422: {"description": "a field failed validation"}}  # fmt: skip
_SUBMIT_ERRORS: _Responses = {400: {"description": "the body is not a JSON object"},
                              403: {"description": "a module:function or payload call without the verb execute, or "
                                                   "a priority above 100 or an internal queue (wraith) without the "
                                                   "role operator or admin"},
                              404: {"description": "no registered Function of that name, or a parent the caller "
                                                   "cannot read"},
                              409: {"description": "the job id is taken by another principal's job"},
                              422: {"description": "a field failed validation"}}  # fmt: skip
_JOB_STATUSES = ("queued", "running", "retrying", "succeeded", "failed", "cancelled", "dead")
_handle: Any = None
_NAME = re.compile(NAME_PATTERN)
# Standard base64 of at least one byte, padded: what b64encode writes (published as the payload's pattern)
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)$")


class JobCall(JobOptions):
    """The body of ``POST /v1/jobs``."""

    function: str = Field(description="A registered Function's name, or 'module:function' (verb execute).")
    args: list[Any] = Field(default_factory=list, description="Positional arguments (module:function only).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (JSON).")
    payload: str | None = Field(None, description="base64 cloudpickle of (fn, args, kwargs) (verb execute).")


def cortex_handle() -> Any:
    """The ``cortex`` actor (a FastAPI dependency; override it in tests or embedders)."""
    global _handle
    if _handle is None:
        from mnemos.cortex.control import get_cortex

        _handle = get_cortex()
    return _handle


# -- who may do what ------------------------------------------------------------------------------
def _subject(principal: Any) -> str | None:
    return getattr(principal, "subject", None) if principal is not None else None


def _role(principal: Any) -> str:
    """The caller's role; no principal (authentication off) is the local admin."""
    return str(getattr(principal, "role", "admin")) if principal is not None else "admin"


def _allowed(principal: Any, verb: str) -> bool:
    if principal is None or not hasattr(principal, "scopes"):
        return True
    from mnemos.soul.rbac import can

    return can(principal, verb)


def _require(principal: Any, verb: str, why: str, param: str) -> None:
    if not _allowed(principal, verb):
        raise PermissionDeniedError(
            f"{why} needs the verb {verb!r}, which role {_role(principal)!r} does not hold "
            f"(verb execute equals cluster root: admin and operator only); call a registered Function by name",
            param=param,
        )


def sees_all(principal: Any) -> bool:
    """Operators, admins and viewers see every job; developers only their own."""
    return _role(principal) != "developer"


def check_owner(principal: Any, view: dict[str, Any], *, logs: bool = False, write: bool = False) -> None:
    """Raise unless ``principal`` may see (``logs``: read the logs of; ``write``: cancel) the job.

    A developer asking for another's job gets 404 (it does not exist for them); a viewer may see
    that a job exists but not read its logs or cancel it (403), nor may any caller read the logs of
    another's job without reading its data (``reads_data``: a credential scoped without ``execute``).
    """
    from mnemos.soul.ownership import reads_data

    role = _role(principal)
    if role == "developer" and view.get("principal") != _subject(principal):
        raise NotFoundError(f"job {view.get('id')!r} not found", param="id")
    if role == "viewer" and (logs or write):
        what = "read the logs of" if logs else "cancel or retry"
        raise PermissionDeniedError(f"role 'viewer' may not {what} jobs", param="role")
    if logs and hasattr(principal, "role") and not reads_data(principal, view.get("principal")):
        raise PermissionDeniedError("the logs of another's job are read by its owner and by credentials "
                                    "that hold the verb execute (this one's scopes leave it out)",
                                    param="scopes")  # fmt: skip


def check_retry(principal: Any, view: dict[str, Any], call: dict[str, Any], functions: FunctionCatalog) -> None:
    """Refuse a retry the caller could not submit now: without the verb ``execute``, the job's
    ``function`` must be the entrypoint of a registered Function the caller's role may call (a
    Function deleted or closed to the role since the job ran is 403, naming ``function``), and its
    arguments (``call``: ``Cortex.call_of``) must still fit that Function's ``parameters`` (422), as
    a new ``POST /v1/jobs`` would be checked."""
    from mnemos.genome.function import check_arguments

    if _allowed(principal, "execute"):
        return
    role = _role(principal)
    callable_now = [f for f in functions.calling(str(view.get("function"))) if role in f.spec.allowed_roles]
    if not callable_now or call.get("pickled") or call.get("args"):
        why = "carries a pickled call" if callable_now else "is not the entrypoint of a registered Function"
        raise PermissionDeniedError(
            f"function: job {view.get('id')!r} ran {view.get('function')!r}, which {why} that role {role!r} may "
            "call now; submit a registered Function by name instead",
            param="function",
        )
    refusals = []
    named = [f for f in callable_now if f.name == view.get("name")]  # the Function it was sent as (its name)
    for function in named or callable_now:  # else any of them that takes these arguments
        try:
            return check_arguments(function, call.get("kwargs") or {})
        except ValidationError as exc:
            refusals.append(exc)
    raise refusals[0]


# -- helpers --------------------------------------------------------------------------------------
def _public(view: dict[str, Any]) -> dict[str, Any]:
    """A job view for HTTP: pickled results are named, not shipped; ``owner`` is shown."""
    result = view.get("result")
    if result and "inline" in result:
        view = {**view, "result": {k: v for k, v in result.items() if k != "inline"}}
    view.pop("traceback", None)
    view.setdefault("owner", view.get("principal"))
    return view


def withhold_job(view: dict[str, Any]) -> dict[str, Any]:
    """A job view (or a ``job.*`` event's data) without its data: the result's value, the error's
    text (the exception class stays), the traceback. ``withheld`` names what was left out."""
    from mnemos.soul.ownership import withheld_error

    out = dict(view)
    withheld = []
    result = out.get("result")
    if isinstance(result, dict):  # encoding, bytes and digest (an output ref) stay; the value goes
        out["result"] = {k: v for k, v in result.items() if k not in ("value", "inline")}
        if out["result"] != result:
            withheld.append("result.value")
    elif result is not None:
        out["result"] = None
        withheld.append("result")
    if out.get("error"):
        out["error"] = withheld_error(out["error"])
        withheld.append("error")
    if out.pop("traceback", None):
        withheld.append("traceback")
    if withheld:
        out["withheld"] = withheld
    return out


def job_for(principal: Any, view: dict[str, Any]) -> dict[str, Any]:
    """A job view for HTTP (see ``_public``), without its data unless ``principal`` reads it
    (the owner, operators and admins: ``mnemos.soul.ownership.reads_data``)."""
    from mnemos.soul.ownership import reads_data

    view = _public(dict(view))
    return view if reads_data(principal, view.get("owner")) else withhold_job(view)


async def _call(handle: Any, method: str, *args: Any) -> Any:
    try:
        return await getattr(handle, method).remote(*args)
    except Exception as exc:  # noqa: BLE001 - a MnemosError raised in the actor arrives wrapped
        cause = getattr(exc, "cause", None)
        if isinstance(cause, MnemosError):
            raise cause from None
        if isinstance(exc, MnemosError):
            raise
        global _handle
        _handle = None
        raise UnavailableError(f"CORTEX is not available: {type(exc).__name__}") from None


def _answer(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turn our errors into OpenAI-shaped JSON responses, with or without the gateway's handlers."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except MnemosError as exc:
            return JSONResponse(exc.to_openai(), status_code=exc.status)

    return wrapper


async def _anonymous() -> Any:
    return None


async def _read_call(request: Request) -> JobCall:
    return json_body(JobCall, await request.body(), content_type=request.headers.get("content-type", ""))


class FunctionCatalog:
    """Registered ``Function`` resources, read from the registry of the platform's ENGRAM.

    Args:
        settings: the platform's settings (default ``MNEMOS_*``).
        registry: a ``Registry`` to read instead of one over ``settings``' ENGRAM (an embedded client's).
    """

    def __init__(self, settings: Any = None, registry: Any = None) -> None:
        self._settings = settings
        self._engram: Any = None
        self._registry: Any = registry

    @property
    def engram(self) -> Any:
        """The platform's ENGRAM (``settings``, default ``MNEMOS_*``), opened on first use."""
        if self._engram is None:
            from mnemos.config import load_settings
            from mnemos.engram import Engram

            self._engram = Engram.from_settings(self._settings or load_settings())
        return self._engram

    @property
    def registry(self) -> Any:
        """The registry the Functions are read from (over ``engram`` unless one was given)."""
        if self._registry is None:
            from mnemos.genome.registry import Registry

            self._registry = Registry(self.engram)
        return self._registry

    def get(self, name: str) -> Any:
        """The Function ``name``; ``NotFoundError`` (``param="function"``) when it is not registered."""
        try:
            return self.registry.get("Function", name)
        except NotFoundError:
            raise NotFoundError(
                f"function: no registered Function named {name!r} (list them with GET "
                "/apis/genome.mnemos.dev/v1/functions; 'module:function' needs the verb execute)",
                param="function",
            ) from None

    def calling(self, entrypoint: str) -> list[Any]:
        """The registered Functions whose entrypoint is ``entrypoint``."""
        return [f for f in self.registry.list("Function") if f.spec.entrypoint == entrypoint]


def lineage_owners(engram: Any, node: str) -> tuple[bool, set[str]]:
    """Whether lineage holds ``node``, and who owns it: its own ``principal`` when it records one,
    else that of the nearest nodes upstream that do (a step's run, an artifact's job or run)."""
    from mnemos.trace.lineage import graph

    try:
        found = graph(engram, node, limit=256)
    except NotFoundError:
        return False, set()
    if found["root"] != node:
        return False, set()
    attrs = {n["id"]: n.get("attrs") or {} for n in found["nodes"]}
    ups: dict[str, list[str]] = {}
    for edge in found["edges"]:
        ups.setdefault(edge["to"], []).append(edge["from"])
    level, seen = [node], {node}
    while level:
        owners = {str(attrs[n]["principal"]) for n in level if n in attrs and attrs[n].get("principal")}
        if owners:
            return True, owners
        nxt = [p for n in level for p in ups.get(n, []) if p not in seen]
        seen.update(nxt)
        level = list(dict.fromkeys(nxt))
    return True, set()


async def check_parents(parents: list[str], principal: Any, handle: Any, engram: Callable[[], Any]) -> None:
    """Refuse a lineage parent that is not a node id (422), or that does not exist or whose data
    ``principal`` does not read (404, the same for both): see the module docstring. A node nobody
    owns (a model, a resource, an artifact no job or run made) is shared: anyone's job may name it."""
    from mnemos.soul.ownership import reads_data

    if len(parents) > _MAX_PARENTS:
        raise ValidationError(f"parents: at most {_MAX_PARENTS} parents, not {len(parents)}", param="parents")
    for index, parent in enumerate(parents):
        param = f"parents[{index}]"
        if not _PARENT.fullmatch(parent):
            raise ValidationError(
                f"{param}: {parent[:80]!r} is not a lineage node (job:<id>, run:<id>, step:<run>/<step>, "
                "artifact:sha256:<hex>, …)",
                param=param,
            )
        if parent.startswith("job:"):
            try:
                view = await _call(handle, "get", parent[len("job:") :])
            except NotFoundError:
                exists, owners = False, set()
            else:
                exists, owners = True, {str(view.get("principal") or "")}
        else:
            exists, owners = await asyncio.to_thread(lineage_owners, engram(), parent)
        if not exists or (owners and not any(reads_data(principal, o) for o in owners)):
            raise NotFoundError(f"{param}: {parent!r} not found", param=param)  # (a shared node: anyone's parent)


async def _not_anothers(handle: Any, job_id: str, principal: Any) -> None:
    """Refuse (409 naming ``id``) a job id that another principal's job holds, in memory or archived."""
    try:
        view = await _call(handle, "get", job_id)
    except NotFoundError:
        return
    if view.get("principal") != _subject(principal):
        raise ConflictError(f"id: {shown_id(job_id)} is already used by another job; choose another id", param="id")


def _options(call: JobCall, principal: Any) -> dict[str, Any]:
    """The job's options from the body, once the caller may ask for them; the caller's team added."""
    options = call.model_dump(exclude_none=True, exclude={"resources", "function", "args", "kwargs", "payload"})
    if call.priority > PRIORITY_RESERVED_ABOVE and _role(principal) not in _PRIORITY_ROLES:
        raise PermissionDeniedError(
            f"priority: {call.priority} is above {PRIORITY_RESERVED_ABOVE}, which is reserved for operators and "
            f"admins; role {_role(principal)!r} may use -1000..{PRIORITY_RESERVED_ABOVE}",
            param="priority",
        )
    if len(call.labels) > MAX_SUBMITTED_LABELS:
        raise ValidationError(f"labels: at most {MAX_SUBMITTED_LABELS} labels, not {len(call.labels)}", param="labels")
    for key, value in call.labels.items():
        check_submitted_label(key, value)
    team = getattr(principal, "team", "") if principal is not None else ""
    if team:
        options["labels"] = {**options.get("labels", {}), TEAM_LABEL: str(team)}
    return options


def check_queue(queue: str, principal: Any, *, function: str | None = None) -> None:
    """Refuse a job of ``principal`` on one of the platform's ``INTERNAL_QUEUES`` unless the caller
    is an operator or admin (403 naming ``queue``); ``function``: the Function whose ``queue`` it is."""
    role = _role(principal)
    if queue in INTERNAL_QUEUES and role not in _PRIORITY_ROLES:
        whose = f"function {function!r} runs on queue {queue!r}, which" if function else f"queue {queue!r}"
        raise PermissionDeniedError(
            f"queue: {whose} is internal to the platform (WRAITH's maintenance tasks): operators and admins "
            f"only, not role {role!r}; leave out queue or name another declared queue",
            param="queue",
        )


def job_spec(call: JobCall, principal: Any, functions: FunctionCatalog) -> JobSubmission:
    """The job CORTEX is sent for an HTTP job call, once the caller may make it (see the module docstring)."""
    if call.id is not None and STEP_JOB_ID.fullmatch(call.id):
        raise ValidationError(f"id: {call.id[:80]!r} has the form of a pipeline step's job id (<run>.<step>.<n>, or "
                              "40 hex digits), which only SYNKRON gives: choose another id", param="id")  # fmt: skip
    if "queue" in call.model_fields_set:
        check_queue(call.queue, principal)
    options = _options(call, principal)
    resources = call.resources.model_dump(exclude_defaults=True)
    if call.payload is not None:
        _require(principal, "execute", "submitting a pickled function", "payload")
        if not _BASE64.fullmatch(call.payload):
            raise ValidationError("payload: not base64 (the standard alphabet, padded with '=')", param="payload")
        return _submission(options, resources, function=call.function, payload=call.payload)
    if ":" in call.function:
        _require(principal, "execute", f"calling {call.function!r}, which is not a registered Function,", "function")
        validate_reference(call.function)
        return _submission(options, resources, function=call.function, args=call.args, kwargs=call.kwargs)
    if not _NAME.fullmatch(call.function):
        raise ValidationError(
            f"function: {call.function[:80]!r} is neither a Function name (lowercase letters, digits, '-', '.') "
            "nor 'package.module:function'",
            param="function",
        )
    function = functions.get(call.function)
    role = _role(principal)
    if role not in function.spec.allowed_roles:
        raise PermissionDeniedError(
            f"function {function.name!r} may be called by {', '.join(function.spec.allowed_roles)}, not by role "
            f"{role!r}",
            param="function",
        )
    if call.args:
        raise ValidationError("args: registered Functions take keyword arguments only (kwargs)", param="args")
    from mnemos.genome.function import check_arguments

    check_arguments(function, call.kwargs)
    if "queue" not in call.model_fields_set:
        options["queue"] = function.spec.queue
        check_queue(function.spec.queue, principal, function=function.name)
    if "resources" not in call.model_fields_set:
        resources = function.spec.resources.model_dump(exclude_defaults=True)
    options.setdefault("name", function.name)
    return _submission(options, resources, function=function.spec.entrypoint, kwargs=call.kwargs)


def _submission(options: dict[str, Any], resources: dict[str, Any], **call: Any) -> JobSubmission:
    """A ``JobSubmission`` of checked parts (a failure here is a 422 naming the field)."""
    try:
        return JobSubmission.model_validate({**options, "resources": resources, **call})
    except PydanticValidationError as exc:
        raise to_validation_error(exc) from None


def build_router(auth: Callable[..., Any] | None = None, settings: Any = None) -> APIRouter:
    """The ``/v1/jobs`` router; ``auth`` is a dependency returning the caller's principal.

    Args:
        auth: a FastAPI dependency returning the caller's principal (None: no authentication,
            every caller is the local admin).
        settings: the platform's settings (the registry of Functions); default ``MNEMOS_*``.
    """
    api = APIRouter(tags=["jobs"])
    who = Depends(auth or _anonymous)
    cortex = Depends(cortex_handle)
    functions = FunctionCatalog(settings)

    async def owned(handle: Any, job_id: str, principal: Any, **need: bool) -> dict[str, Any]:
        if not _JOB_ID.fullmatch(job_id):  # no job has such an id: not found, without asking CORTEX
            raise NotFoundError(f"job {shown_id(job_id)} not found", param="id")
        view: dict[str, Any] = await _call(handle, "get", job_id)
        check_owner(principal, view, **need)
        return view

    call_schema = JobCall.model_json_schema()
    # What job_spec accepts: a registered Function's name or module:function; with a payload,
    # `function` only names the pickled call (any string)
    call_schema["anyOf"] = [
        {"properties": {"function": {"pattern": f"({_NAME.pattern})|({REFERENCE.pattern})"},
                        "payload": {"type": "null"}}},
        {"required": ["payload"], "properties": {"payload": {"type": "string"}}},
    ]
    call_schema["properties"]["payload"]["anyOf"][0]["pattern"] = _BASE64.pattern
    call_schema["properties"]["id"]["anyOf"][0]["pattern"] = _JOB_ID.pattern  # JobOptions' id validator
    # seconds or "30s", "5m", "1h"; at most 30 days (JobOptions' timeout validator; a string's bound is not
    # expressible in its pattern)
    timeout = positive_duration_schema()
    timeout[0]["maximum"] = MAX_JOB_TIMEOUT_S
    call_schema["properties"]["timeout"]["anyOf"] = timeout
    call_schema["properties"]["labels"].update(  # check_submitted_label
        propertyNames={"pattern": LABEL_KEY_PATTERN, "not": {"pattern": RESERVED_LABEL_PATTERN}},
        additionalProperties={"type": "string", "maxLength": MAX_LABEL_VALUE},
        maxProperties=MAX_SUBMITTED_LABELS,
    )
    call_schema["properties"]["parents"].update(maxItems=_MAX_PARENTS)  # check_parents
    call_schema["properties"]["parents"]["items"]["pattern"] = _PARENT.pattern
    body = {"requestBody": {"required": True, "content": {"application/json": {"schema": call_schema}}}}

    @api.post("/v1/jobs", openapi_extra={**_SUBMIT, **body}, responses=_SUBMIT_ERRORS)
    @_answer
    async def submit_job(request: Request, principal: Any = who, handle: Any = cortex) -> Any:
        """Submit a call of a registered Function (or, with the verb execute, of any code)."""
        call = await _read_call(request)
        submission = await asyncio.to_thread(job_spec, call, principal, functions)
        await check_parents(call.parents, principal, handle, lambda: functions.engram)
        if call.id is not None:  # past retention an id is no idempotency key, yet the archive answers for its job:
            await _not_anothers(handle, call.id, principal)  # another's would have hidden it (and its lineage)
        with span("relay.jobs.submit", carrier=request.headers, kind=SpanKind.SERVER, function=submission.function,
                  attributes={PRINCIPAL_ATTRIBUTE: _subject(principal)}):  # the trace's owner (TRACE's /v1/traces)
            submission.trace = inject()
            ids = await _call(handle, "submit_many", [submission], _subject(principal))
        view = await _call(handle, "get", ids[0])
        if not sees_all(principal) and view.get("principal") != _subject(principal):
            raise ConflictError(f"id: {ids[0]!r} is already used by another job; choose another id", param="id")
        return job_for(principal, view)

    @api.get("/v1/jobs", openapi_extra=_READ,
             responses={404: {"description": "no job `after` names (or not the caller's)"}, 422: _NO_JOB[422]})
    @_answer
    async def list_jobs(
        request: Request,
        queue: str | None = Query(None, json_schema_extra={"pattern": _NAME.pattern},
                                  description="Only this queue's: one of settings.cortex.queues (else 422)."),
        # Bounds published here and checked below (the answer keeps the OpenAI shape without the gateway's handlers).
        status: str | None = Query(None, json_schema_extra={"enum": list(_JOB_STATUSES)},
                                   description="Only jobs in this state ('dead': failed)."),
        limit: int = Query(100, json_schema_extra={"minimum": 1, "maximum": MAX_LIST_LIMIT},
                           description="Jobs per page."),
        after: str | None = Query(None, json_schema_extra={"pattern": _JOB_ID.pattern},
                                  description="A job id (a page's last_id): the page of older jobs after it."),
        principal: Any = who,
        handle: Any = cortex,
    ) -> Any:
        """Jobs, newest first, a page at a time (a developer's own only): ``has_more`` says whether
        another page follows; ask for it with ``after=<last_id>``."""
        check_query(request, "queue", "status", "limit", "after")
        if queue is not None and not _NAME.fullmatch(queue):
            raise ValidationError(f"queue: {queue[:80]!r} is not a queue name (lowercase letters, digits, '-', '.')",
                                  param="queue")  # fmt: skip
        if status is not None and status not in _JOB_STATUSES:
            raise ValidationError(f"status: {status[:80]!r} is not one of {', '.join(_JOB_STATUSES)}", param="status")
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValidationError(f"limit: must be between 1 and {MAX_LIST_LIMIT}", param="limit")
        mine = None if sees_all(principal) else _subject(principal)
        data = await _call(handle, "list", queue, status, limit + 1, None, mine, after)
        page = [job_for(principal, v) for v in data[:limit]]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": len(data) > limit}  # fmt: skip

    @api.get("/v1/jobs:stats", openapi_extra=_READ, responses={422: _NO_JOB[422]})
    @_answer
    async def job_stats(request: Request, principal: Any = who, handle: Any = cortex) -> Any:  # admitted by `who`
        """Queues, pools and job counts: no job's data, so every role reads them."""
        check_query(request)
        return await _call(handle, "stats")

    @api.get("/v1/jobs/{job_id}", openapi_extra=_READ, responses=_NO_JOB)
    @_answer
    async def get_job(request: Request, job_id: str, principal: Any = who,
                      wait: float | None = Query(None, json_schema_extra={"minimum": 0, "maximum": _MAX_WAIT}),
                      handle: Any = cortex) -> Any:  # fmt: skip
        """One job; with ``wait``, once it finished (or after ``wait`` seconds)."""
        check_query(request, "wait")
        if wait is not None and not 0 <= wait <= _MAX_WAIT:
            raise ValidationError(f"wait: must be between 0 and {_MAX_WAIT:g} seconds", param="wait")
        view = await owned(handle, job_id, principal)
        if wait is None:
            return job_for(principal, view)
        return job_for(principal, await _call(handle, "wait", job_id, wait))

    @api.delete("/v1/jobs/{job_id}", openapi_extra=_SUBMIT,
                responses={**_NO_JOB, 409: {"description": "the job already finished"}})  # fmt: skip
    @_answer
    async def cancel_job(request: Request, job_id: str, principal: Any = who, handle: Any = cortex) -> Any:
        """Cancel a queued or running job (developers: their own)."""
        check_query(request)
        await owned(handle, job_id, principal, write=True)
        return job_for(principal, await _call(handle, "cancel", job_id, _subject(principal)))

    @api.post("/v1/jobs/{job_id}/retry", openapi_extra=_SUBMIT,
              responses={**_NO_JOB, 403: {"description": "the job's function is no registered Function the role may "
                                                         "call (without the verb execute)"},
                         409: {"description": "the job is not failed or cancelled"}})  # fmt: skip
    @_answer
    async def retry_job(request: Request, job_id: str, principal: Any = who, handle: Any = cortex) -> Any:
        """Submit a failed or cancelled job again (developers: their own): the new job, whose lineage
        parent is the old one; its owner is the caller, and its team label the caller's. A job that
        carries pickled code is retried only by a caller with the verb ``execute``."""
        check_query(request)
        view = await owned(handle, job_id, principal, write=True)
        if view.get("status") in ("failed", "cancelled"):  # else CORTEX answers 409: nothing would run
            call = await _call(handle, "call_of", job_id)
            await asyncio.to_thread(check_retry, principal, view, call, functions)
        team = None if principal is None else str(getattr(principal, "team", "") or "")  # the new owner's
        new_id = await _call(handle, "retry", job_id, _subject(principal), team)
        return job_for(principal, await _call(handle, "get", new_id))

    @api.get("/v1/jobs/{job_id}/logs", openapi_extra=_READ, responses=_NO_JOB)
    @_answer
    async def job_logs(request: Request, job_id: str, principal: Any = who, handle: Any = cortex) -> Any:
        """What the job printed (developers: their own; viewers: none)."""
        check_query(request)
        await owned(handle, job_id, principal, logs=True)
        return {"id": job_id, "object": "job.logs", "logs": await _call(handle, "logs", job_id)}

    return api


router = build_router()
