"""SYNKRON over HTTP: start and follow pipeline runs.

    POST /v1/pipelines/{name}/runs   {"params": {...}, "cache": true}  → 202 {run}
    GET  /v1/pipelines/{name}/runs   recent runs of a pipeline
    GET  /v1/runs?pipeline=&limit=   recent runs of every pipeline (or one), newest first
    GET  /v1/runs/{id}               a run's state (steps, jobs, outputs)
    GET  /v1/runs/{id}/outputs/{output}   the bytes of one output (streamed, application/octet-stream;
                                     ETag/If-None-Match → 304, one Range → 206)
    POST /v1/runs/{id}/cancel        → 202 {run}
    POST /v1/runs/{id}/resume        → 202 {run}

The gateway includes ``build_router(auth=…, settings=…)`` (or ``router``, which reads its
settings from ``MNEMOS_*``). Errors use the OpenAI error shape with the error's status. A query
parameter a route does not take (``?foo=1``), or one given twice, is a 422 naming it.

Who may run what: only *registered* pipelines run over HTTP (applied by someone with ``apply``,
like Functions), so their scripts and ``call``s are code an operator approved; starting one needs
``submit``, and ``infer`` too when it has ``infer`` or ``index`` steps (they run models as the
caller, on the caller's limits and budgets). Parameters are data: they are shell-quoted in
scripts and may not choose ``call`` or ``image``. For callers without ``execute`` they are data
only, whatever exists on the gateway host: no value written as a path or URL (``/…``, ``~``,
``file:``, ``s3://…``, ``..``); where a step reads an input file, only an ENGRAM ref
``runs/<run>/<output>``; in a script (or a script step's ``env``), no string starting with ``-``
unless the script writes ``-- ${name}`` (``-- "$V"``) (``mnemos.synkron._plan.check_caller_values``).

Ownership: a run's ``owner`` is the subject that started it. Developers list, read, cancel and
resume their own runs only (another's is 404); viewers read every run but change none (403);
operators and admins do everything. A run's data — its ``params`` values, the values naming its
``inputs``, its steps' ``result``s (a script step's ``log``, a call step's returned value, an index
step's space) and its error texts — is shown to its owner, operators and admins only: to a viewer a
run is its metadata (status, owner, timings, steps, input digests, output refs, the error's
exception class), see ``mnemos.soul.ownership``. A parameter naming another run's output
``runs/<run>/<output>`` needs a caller who reads that run's data (else 404, as for no such run),
and an ``index`` step writes only a space its caller owns (operators and admins: any), else 403:
see ``mnemos.synkron._access``. Resuming a run runs those checks again, for the resumer.
An output's bytes are its run's data too: its owner, operators and admins read them (another
developer's run is 404, a viewer is 403). A run id that is not one (too long, a character a run
id never has) is 404, as for no such run.
"""

from __future__ import annotations

import asyncio
import errno
import math
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import Field

from mnemos._http import JSONResponse, declared_query
from mnemos._model import CoreModel, json_body
from mnemos.config import Settings, load_settings
from mnemos.errors import (
    ClientError,
    MnemosError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ValidationError,
)
from mnemos.genome import NAME_PATTERN
from mnemos.genome.pipeline import MAX_RUN_ID, string_leaves
from mnemos.synkron._access import run_output

__all__ = ["RunRequest", "build_router", "check_caller_params", "check_run_id", "check_run_owner", "mask_run_secrets",
           "router", "run_for", "withhold_run"]  # fmt: skip

_SUBMIT = {"x-mnemos-verb": "submit"}
_READ = {"x-mnemos-verb": "read-artifacts"}
# Statuses of the routes themselves (RELAY's edge adds 401/403/429 and the error body's schema).
_READ_ERRORS: dict[int | str, dict[str, Any]] = {404: {"description": "no such pipeline or run (or not the caller's)"},
                                                 422: {"description": "a field failed validation"}}  # fmt: skip
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_READ_ERRORS,
    400: {"description": "the body is not a JSON object"},
    403: {"description": "the caller may not start or change this run"},
    409: {"description": "the run is not in a state that allows it"},
}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_UP = re.compile(r"(^|/)\.\.(/|$)")
_OVERFETCH = 1000  # a developer's listing is filtered from this many newest runs
# ``<pipeline>-<yyyymmdd-hhmmss>-<4 hex>`` (``genome.pipeline.new_run_id``): an id longer than
# ``MAX_RUN_ID``, or with a character no run id has, is no run
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_LIST = 1000
_CHUNK = 1 << 20  # an output is streamed a MiB at a time
_STEP_METRICS = ("items", "items_per_s")  # what a step's result says of its work, not its data


class RunRequest(CoreModel):
    """The body of ``POST /v1/pipelines/{name}/runs``."""

    params: dict[str, Any] = Field(default_factory=dict, description="Values for the pipeline's spec.params.")
    cache: bool = Field(True, description="Reuse the outputs of steps whose inputs are unchanged.")


def _error(exc: MnemosError) -> JSONResponse:
    retry = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))} if isinstance(exc, RateLimitError) else None
    return JSONResponse(exc.to_openai(), status_code=exc.status, headers=retry)


def _subject(principal: Any) -> str | None:
    return getattr(principal, "subject", None) if principal is not None else None


def _authorize(principal: Any, verb: str) -> None:
    if principal is None or not hasattr(principal, "role"):
        return
    from mnemos.soul.rbac import authorize

    authorize(principal, verb)


def _role(principal: Any) -> str:
    return str(getattr(principal, "role", "admin")) if principal is not None else "admin"


def check_run_owner(principal: Any, state: dict[str, Any], *, write: bool = False) -> None:
    """404 when a developer asks for another's run; 403 when a viewer would change one."""
    role = _role(principal)
    if role == "developer" and state.get("principal") != _subject(principal):
        raise NotFoundError(f"run {state.get('id')!r} not found", param="run_id")
    if role == "viewer" and write:
        raise PermissionDeniedError("role 'viewer' may not change runs", param="role")


def _check_name(name: str) -> None:
    """422 naming ``name`` for a path segment that is no pipeline name (``..``, ``a\\b``), before it
    reaches the registry's keys (whose error would name ``key``)."""
    if re.fullmatch(NAME_PATTERN, name) is None:
        raise ValidationError(f"name: {name[:80]!r} is not a pipeline name (DNS-1123)", param="name")


def check_run_id(run_id: str) -> str:
    """``run_id`` when it may name a run; else ``NotFoundError``, as for a run that does not exist
    (an over-long id, or one with a character no run id has, would otherwise reach ENGRAM's paths)."""
    if len(run_id) > MAX_RUN_ID or _RUN_ID.fullmatch(run_id) is None:
        raise NotFoundError(f"run {run_id[:80]!r}{'…' if len(run_id) > 80 else ''} not found", param="run_id")
    return run_id


def withhold_run(state: dict[str, Any]) -> dict[str, Any]:
    """A run's state (or a ``run.*`` event's data) without its data: ``params`` values and the
    defaults in ``doc.spec.params`` (their names stay), the values that named its ``inputs`` (a list
    of their digests stays, as lineage shows them; each step's ``inputs`` become those digests),
    each step's ``result`` but its counts (``items``, ``items_per_s``; not an index step's ``space``,
    a parameter's value), the error texts (the exception class stays), each step's ``cache_key`` (a
    hash of its params, as lineage withholds it) and ``meter.limits_key`` (a credential id).
    ``withheld`` names what was left out."""
    from mnemos.soul.ownership import withheld_error

    out = dict(state)
    withheld = []
    if isinstance(out.get("params"), dict) and out["params"]:
        out["params"] = dict.fromkeys(out["params"])
        withheld.append("params")
    spec = (out.get("doc") or {}).get("spec") if isinstance(out.get("doc"), dict) else None
    if isinstance(spec, dict) and isinstance(spec.get("params"), dict) and spec["params"]:  # the defaults
        out["doc"] = {**out["doc"], "spec": {**spec, "params": dict.fromkeys(spec["params"])}}
        withheld.append("doc.spec.params")
    if out.get("error"):
        out["error"] = withheld_error(out["error"])
        withheld.append("error")
    tokens: dict[str, Any] = out["inputs"] if isinstance(out.get("inputs"), dict) else {}
    if tokens:  # keyed by the values that named them (params): their digests stay, as in lineage
        out["inputs"] = [{"digest": (v or {}).get("digest")} for v in tokens.values()]
        withheld.append("inputs")
    if isinstance(out.get("meter"), dict) and out["meter"].get("limits_key"):
        out["meter"] = {**out["meter"], "limits_key": None}  # a credential id
        withheld.append("meter.limits_key")
    steps = {}
    for name, step in (out.get("steps") or {}).items():
        step = dict(step)
        if step.get("inputs"):
            step["inputs"] = [(tokens.get(t) or {}).get("digest") for t in step["inputs"]]
            withheld.append(f"steps.{name}.inputs")
        result = step.get("result")
        if result is not None:
            kept = {k: result[k] for k in _STEP_METRICS if k in result} if isinstance(result, dict) else {}
            step["result"] = kept or None
            if kept != result:
                withheld.append(f"steps.{name}.result")
        if step.get("error"):
            step["error"] = withheld_error(step["error"])
            withheld.append(f"steps.{name}.error")
        if step.get("cache_key"):  # a hash of the step with its params: a guess of them is checked against it
            step["cache_key"] = None
            withheld.append(f"steps.{name}.cache_key")
        steps[name] = step
    if "steps" in out:
        out["steps"] = steps
    if withheld:
        out["withheld"] = withheld
    return out


def mask_run_secrets(state: dict[str, Any]) -> dict[str, Any]:
    """A run's state with the values of its params named like credentials (``hf_token``,
    ``db_password``, ``aws_secret_access_key`` …, at any depth; and such defaults in
    ``doc.spec.params``) as ``***``, as lineage records them, and a URL's ``user:password@`` and query
    values as ``***`` (as ``_state.seal_params`` sealed them): the steps get the values, no reader of
    the run (its owner included) sees them again (``_state.shown_state``)."""
    from mnemos.synkron._state import shown_state

    return shown_state(state)


def run_for(principal: Any, state: dict[str, Any]) -> dict[str, Any]:
    """A run's state for ``principal``: whole for its owner, operators and admins (its credential
    params masked, ``mask_run_secrets``), else ``withhold_run``."""
    from mnemos.soul.ownership import reads_data

    return mask_run_secrets(state) if reads_data(principal, state.get("principal")) else withhold_run(state)


def check_caller_params(principal: Any, params: dict[str, Any]) -> None:
    """Refuse parameter values written as a path or URL (``/…``, ``~…``, ``file:``, ``s3://…``,
    ``..``), unless the caller holds ``execute``. Lexical only: whether a file exists never changes
    the answer; where steps read input files, the run's preparation refuses the caller's values that
    are no ENGRAM ref (``_plan.check_caller_values``). An ENGRAM ref ``runs/<run>/<output>`` passes
    here; whether the caller reads that run is checked there too (``_access.check_param_refs``)."""
    from mnemos.synkron._plan import restricted

    if not restricted(principal):
        return
    for name, value in params.items():
        for text in string_leaves(value):
            if text.startswith("runs/") and not _UP.search(text):
                continue
            if text.startswith(("/", "~", "file:")) or _URL.match(text) or _UP.search(text):
                raise ValidationError(
                    f"params.{name}: a parameter may not name a file or URL the platform would read; pass "
                    "data, or an ENGRAM ref runs/<run>/<output> (files and URLs need the verb execute)",
                    param=f"params.{name}",
                )


def _chunks(reader: Any, length: int | None = None) -> Any:
    """The reader's bytes a chunk at a time (``length`` of them at most), then closed. A whole
    blob's reader checks its digest at the end."""
    try:
        while (length is None or length > 0) and (chunk := reader.read(_CHUNK if length is None else
                                                                       min(_CHUNK, length))):  # fmt: skip
            length = None if length is None else length - len(chunk)
            yield chunk
    finally:
        reader.close()


def _not_modified(if_none_match: str | None, digest: str) -> bool:
    """Whether ``If-None-Match`` matches the ETag ``"<digest>"``: ``*``, or a list of entity tags
    compared weakly (``W/"…"`` matches too), as RFC 9110 §13.1.2 says for GET."""
    if not if_none_match:
        return False
    return if_none_match.strip() == "*" or digest in re.findall(r'(?:W/)?"([^"]*)"', if_none_match)


_RANGE = re.compile(r"\s*bytes\s*=\s*(?:(\d+)\s*-\s*(\d*)|-\s*(\d+))\s*", re.IGNORECASE)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte (inclusive) of the one range ``Range`` asks for; ``None`` for no
    range, one that is not a single byte range (several ranges, another unit, bad syntax: the whole
    body is sent), or ``last < first``; ``RangeNotSatisfiableError`` when it starts past the end."""
    found = _RANGE.fullmatch(header or "")
    if found is None:
        return None
    first, last, suffix = found.groups()
    if suffix is not None:  # the last n bytes
        if int(suffix) == 0 or size == 0:
            raise RangeNotSatisfiableError(f"range: {header!r} asks for no bytes of an output of {size} bytes",
                                           param="range")  # fmt: skip
        return max(0, size - int(suffix)), size - 1
    if last and int(last) < int(first):
        return None
    if int(first) >= size:
        raise RangeNotSatisfiableError(f"range: {header!r} starts past the end of the output ({size} bytes): ask for "
                                       f"bytes 0-{size - 1} at most", param="range")  # fmt: skip
    return int(first), min(int(last), size - 1) if last else size - 1


def _open_blob(engram: Any, digest: str, first: int | None) -> Any:
    """A reader of the blob ``digest``: the whole blob (its digest checked at the end), or from its
    byte ``first`` on (a seek: the bytes before it are never read)."""
    if first is None:
        return engram.open(digest)
    reader = engram.fs.open(engram.path(engram.blob_key(digest)), "rb")
    reader.seek(first)
    return reader


class RangeNotSatisfiableError(ClientError):
    """A ``Range`` that starts past the end of the output (416, with ``Content-Range: bytes */size``)."""

    status = 416
    code = "range_not_satisfiable"


def _filename(output: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", output)[:200] or "output"


def build_router(*, auth: Callable[..., Any] | None = None, settings: Settings | None = None) -> APIRouter:
    """The SYNKRON routes.

    Args:
        auth: a FastAPI dependency returning the caller's principal (raising when refused);
            starting, cancelling and resuming runs also need the ``submit`` verb.
        settings: the platform's settings (default: read from ``MNEMOS_*`` on first use).
    """
    clients: dict[str, Any] = {}

    async def no_auth() -> None:
        return None

    caller = Depends(auth or no_auth)

    async def query_checked(request: Request, principal: Any = caller) -> None:
        """Once the caller is admitted: ``?foo=1`` (a typo of a filter) is a 422, never ignored."""
        await declared_query(request)

    router = APIRouter(tags=["pipelines"], dependencies=[Depends(query_checked)])

    def client() -> Any:
        if "client" not in clients:
            import ray

            from mnemos.synkron._context import RunContext

            clients["client"] = RunContext(settings or load_settings(), connected=ray.is_initialized())
        return clients["client"]

    async def call(fn: Callable[[], Any], status: int = 200, *, principal: Any = None, verb: str = "") -> JSONResponse:
        """``fn()`` on a thread as JSON; with ``verb``, the principal must be allowed it first."""
        try:
            if verb:
                _authorize(principal, verb)
            return JSONResponse(await asyncio.to_thread(fn), status_code=status)
        except MnemosError as exc:
            return _error(exc)

    run_schema = RunRequest.model_json_schema()
    run_body = {"requestBody": {"required": False, "content": {"application/json": {"schema": run_schema}}}}

    @router.post("/v1/pipelines/{name}/runs", status_code=202, openapi_extra={**_SUBMIT, **run_body},
                 responses=_WRITE_ERRORS)  # fmt: skip
    async def start_run(request: Request, name: str = Path(..., json_schema_extra={"pattern": NAME_PATTERN}),
                        principal: Any = caller) -> JSONResponse:  # fmt: skip
        """Start a run of the registered pipeline ``name``."""
        try:
            _authorize(principal, "submit")
            _check_name(name)
            body = json_body(RunRequest, await request.body(), content_type=request.headers.get("content-type", ""))
            check_caller_params(principal, body.params)
        except MnemosError as exc:
            return _error(exc)

        def start() -> dict[str, Any]:
            c = client()
            pipeline = c.registry.get("Pipeline", name)
            if any(step.type in ("infer", "index") for step in pipeline.spec.steps):
                _authorize(principal, "infer")  # its model steps run models on the caller's behalf
            handle = c.pipelines.run(pipeline, body.params, progress=False, wait=False, cache=body.cache,
                                     principal=principal)  # fmt: skip
            return run_for(principal, handle.state())

        return await call(start, 202)

    @router.get("/v1/pipelines/{name}/runs", openapi_extra=_READ, responses=_READ_ERRORS)
    async def list_runs(name: str = Path(..., json_schema_extra={"pattern": NAME_PATTERN}),
                        principal: Any = caller) -> JSONResponse:  # fmt: skip
        """Recent runs of a pipeline, newest first (a developer's own only)."""
        try:
            _check_name(name)
        except MnemosError as exc:
            return _error(exc)
        if _role(principal) != "developer":
            return await call(lambda: {"object": "list", "data": client().pipelines.list(name)})
        me = _subject(principal)

        def mine() -> dict[str, Any]:
            runs = [r for r in client().pipelines.list(name, limit=_OVERFETCH) if r.get("owner") == me]
            return {"object": "list", "data": runs[:20]}

        return await call(mine)

    def state_of(run_id: str) -> dict[str, Any]:
        """The state of the run ``run_id`` names (``NotFoundError`` for an id that can name none)."""
        try:
            return dict(client().pipelines.get(check_run_id(run_id)).state())
        except OSError as exc:  # a name the store cannot hold (ENAMETOOLONG …) names no run either
            if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL):
                raise NotFoundError(f"run {run_id[:80]!r} not found", param="run_id") from None
            raise

    @router.get("/v1/runs", openapi_extra=_READ, responses=_READ_ERRORS)
    async def list_all_runs(
        pipeline: str | None = Query(None, json_schema_extra={"pattern": NAME_PATTERN},
                                     description="Only runs of this pipeline."),
        limit: int = Query(20, json_schema_extra={"minimum": 1, "maximum": _MAX_LIST}, description="Runs at most."),
        principal: Any = caller,
    ) -> JSONResponse:  # fmt: skip
        """Recent runs of every pipeline (or of ``pipeline``), newest first (a developer's own only)."""
        if pipeline is not None and re.fullmatch(NAME_PATTERN, pipeline) is None:
            return _error(ValidationError(f"pipeline: {pipeline[:80]!r} is not a pipeline name (DNS-1123)",
                                          param="pipeline"))  # fmt: skip
        if not 1 <= limit <= _MAX_LIST:
            return _error(ValidationError(f"limit: must be between 1 and {_MAX_LIST}", param="limit"))
        if _role(principal) != "developer":
            return await call(lambda: {"object": "list", "data": client().pipelines.list(pipeline, limit)})
        me = _subject(principal)

        def mine() -> dict[str, Any]:
            runs = [r for r in client().pipelines.list(pipeline, limit=_OVERFETCH) if r.get("owner") == me]
            return {"object": "list", "data": runs[:limit]}

        return await call(mine)

    @router.get("/v1/runs/{run_id}", openapi_extra=_READ, responses=_READ_ERRORS)
    async def get_run(run_id: str, principal: Any = caller) -> JSONResponse:
        """A run's state."""

        def read() -> dict[str, Any]:
            state = state_of(run_id)
            check_run_owner(principal, state)
            return {**run_for(principal, state), "owner": state.get("principal")}

        return await call(read)

    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    output_errors: dict[int | str, dict[str, Any]] = {
        200: {"description": "the output's bytes, as its step wrote them", "content": binary},
        206: {"description": "the bytes of the one range that Range asks for (Content-Range)", "content": binary},
        304: {"description": "If-None-Match names the output's ETag: not modified, no body"},
        403: {"description": "the caller may see the run but not read its data (a viewer)"},
        404: {"description": "no such run (or not the caller's), or no such output of it"},
        409: {"description": "the step that writes the output has not completed"},
        416: {"description": "Range starts past the end of the output (Content-Range: bytes */size)"},
        422: _READ_ERRORS[422],
    }

    @router.get("/v1/runs/{run_id}/outputs/{output:path}", openapi_extra=_READ, responses=output_errors,
                response_class=StreamingResponse)  # fmt: skip
    async def read_output(request: Request, run_id: str, output: str, principal: Any = caller) -> Any:
        """The bytes of one output of a run (``runs/<run>/<output>`` in ENGRAM), streamed; the
        ``X-Mnemos-Digest`` header names the sha256 of the whole output, also its ``ETag``. Its
        owner, operators and admins read it; for them alone (it is checked first) an
        ``If-None-Match`` naming the ETag (or ``*``) is answered 304, and one ``Range``
        (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) 206 with ``Content-Range`` (read from that offset,
        never the whole output; an ``If-Range`` other than the ETag sends the whole output), or 416
        when it starts past the end. Several ranges, or a range in another unit, get the whole
        output (200), as RFC 9110 allows."""

        def find_output() -> tuple[str, int | None]:
            state = state_of(run_id)
            check_run_owner(principal, state)
            engram = client().engram
            digest = run_output(engram, principal, state, output)
            try:
                return digest, engram.size(digest)
            except (OSError, TypeError, MnemosError):
                return digest, None  # no size from the store: the whole output, no ranges

        try:
            digest, size = await asyncio.to_thread(find_output)
            headers = {"X-Mnemos-Digest": digest, "ETag": f'"{digest}"'}
            if _not_modified(request.headers.get("if-none-match"), digest):
                return Response(status_code=304, headers=headers)
            if_range = request.headers.get("if-range")
            wanted = None
            if size is not None:
                headers["Accept-Ranges"] = "bytes"
            if size is not None and if_range in (None, headers["ETag"]):
                wanted = _byte_range(request.headers.get("range"), size)
            reader = await asyncio.to_thread(_open_blob, client().engram, digest,
                                           None if wanted is None else wanted[0])  # fmt: skip
        except RangeNotSatisfiableError as exc:
            return JSONResponse(exc.to_openai(), status_code=exc.status, headers={"Content-Range": f"bytes */{size}"})
        except MnemosError as exc:
            return _error(exc)
        headers["Content-Disposition"] = f'attachment; filename="{_filename(output)}"'
        if wanted is None:
            headers.update({"Content-Length": str(size)} if size is not None else {})
            return StreamingResponse(_chunks(reader), media_type="application/octet-stream", headers=headers)
        first, last = wanted
        headers.update({"Content-Range": f"bytes {first}-{last}/{size}", "Content-Length": str(last - first + 1)})
        return StreamingResponse(_chunks(reader, last - first + 1), status_code=206,
                                 media_type="application/octet-stream", headers=headers)  # fmt: skip

    @router.post("/v1/runs/{run_id}/cancel", status_code=202, openapi_extra=_SUBMIT, responses=_WRITE_ERRORS)
    async def cancel_run(run_id: str, principal: Any = caller) -> JSONResponse:
        """Cancel a running run."""

        def cancel() -> dict[str, Any]:
            check_run_owner(principal, state_of(run_id), write=True)
            return run_for(principal, client().pipelines.cancel(run_id))

        return await call(cancel, 202, principal=principal, verb="submit")

    @router.post("/v1/runs/{run_id}/resume", status_code=202, openapi_extra=_SUBMIT, responses=_WRITE_ERRORS)
    async def resume_run(run_id: str, principal: Any = caller) -> JSONResponse:
        """Resume a failed or cancelled run."""

        def resume() -> dict[str, Any]:
            state = state_of(run_id)
            check_run_owner(principal, state, write=True)
            if any(step.get("type") in ("infer", "index") for step in state["steps"].values()):
                _authorize(principal, "infer")
            # the Principal itself: the run's start checks run again for the resumer (``_plan.check_resume``)
            return run_for(principal, client().pipelines.resume(run_id, progress=False, wait=False,
                                                                principal=principal).state())  # fmt: skip

        return await call(resume, 202, principal=principal, verb="submit")

    return router


router = build_router()
