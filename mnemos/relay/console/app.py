"""The console's routes under ``/ui`` (server-rendered Jinja2 pages, live through ``/ui/events``).

    GET  /ui/signin, POST /ui/signin (api_key)   POST /ui/signout (GET: a page with its button)
    GET  /ui/models, /ui/models/{name}?a=&b=     phase, replicas, rates; generations and a diff
    GET  /ui/jobs?queue=&status=&owner=          GET /ui/jobs/{id} (live logs), POST /ui/jobs/{id}/cancel
    GET  /ui/runs, /ui/runs/{id}                 a run's steps as a live graph
    GET  /ui/lineage?id=                         intent → execution → result of any id
    GET  /ui/events                              ``GET /v1/events`` (its handler), for the pages' EventSource
    GET  /ui/keys (admin), /ui/audit             per principal usage (a team's admin: its team's, as the
                                                 credentials: ``soul.http.manages``); who changed what, when

Pages authenticate with the session cookie (``session.Sessions``); a missing, forged, expired or
revoked cookie gets the sign-in page with 401 (a cookie is cleared). Writes (sign-out, cancel) are
forms with a CSRF token. Every ``POST`` (sign-in too) posted from another site's page (``Origin``,
else ``Referer``, not one of ``relay.console.allowedOrigins``, or when none are set not this host:
``session.same_origin``) is refused with 403. Every way out of a session revokes its token:
sign-out, the sign-in page (``GET``) and a new sign-in. A job, run or lineage node that is not the
caller's reads as the API answers it: a developer gets 404, a viewer its metadata without its data
(``mnemos.soul.ownership``). The audit page lists every event to operators and admins, and to
everyone else the events they are the actor (or refused subject) of.

Every refusal under ``/ui`` is a page with the status the API would answer, saying what was wrong
and linking back: a malformed query (``?a=abc``: 422), a method a page does not take (405, with
``Allow``), a path no page lives at (404). Only ``/ui/events`` (the API's handler) answers JSON.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnemos.cortex.job import join_logs
from mnemos.errors import AuthenticationError, MnemosError, NotFoundError, PermissionDeniedError, ValidationError
from mnemos.relay.console import data
from mnemos.relay.console.session import (
    COOKIE,
    EVENTS,
    PREFIX,
    CookieBearer,
    Sessions,
    csrf_ok,
    csrf_token,
    drop_cookie,
    same_origin,
    set_cookie,
)

__all__ = ["mount"]

_STATIC = Path(__file__).parent / "static"
_BUS_TIMEOUT_S = 2.0
_LINEAGE_ID_MAX = 512  # the longest id GET /v1/lineage/{id} takes
_CROSS_SITE = ("Refused: this form was sent from another site's page, not from this console's. Open the console "
               "at its own address and try again.")  # fmt: skip
_PAGES = (("models", "Models"), ("jobs", "Jobs"), ("runs", "Pipelines"), ("lineage", "Lineage"),
          ("keys", "Keys & usage"), ("audit", "Audit"))  # fmt: skip


def _when(ts: Any) -> str:
    """A stored time as a local date; one no calendar can show (an expiry 10^12 days away) as it is."""
    if not ts:
        return "—"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
    except (TypeError, ValueError, OverflowError, OSError):
        return str(ts)


def _num(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("mnemos.relay.console", "templates"),
                      autoescape=select_autoescape(["html", "jinja"]))  # fmt: skip
    env.filters.update(when=_when, num=_num)
    return env


def _can(principal: Any, verb: str) -> bool:
    from mnemos.soul.rbac import allowed

    return allowed(principal.role, verb, principal.scopes)


def mount(app: FastAPI, gateway: Any, edge: Any) -> None:
    """Serve the console at ``/ui`` on the gateway's app (one call in ``ingress.create_app``)."""
    from mnemos.relay.event_stream import alias

    router = build_router(gateway, edge)
    app.include_router(router)
    alias(app, EVENTS)  # the live updates, where the session cookie (Path=/ui) is sent
    error_page = cast(type[_PageRoute], router.route_class).error_page
    app.mount(f"{PREFIX}/static", _Static(error_page, directory=_STATIC), name="console-static")
    app.router.routes.append(_NoPage(f"{PREFIX}/{{path:path}}", error_page))  # last: after the events and static
    app.add_middleware(CookieBearer)  # outermost: before the edge authenticates


def build_router(gateway: Any, edge: Any, *, allowed_origins: list[str] | None = None) -> APIRouter:
    """The ``/ui`` routes over one replica's gateway and edge seam.

    ``allowed_origins``: the origins whose pages may post the console's forms (default: the gateway's
    ``relay.console.allowedOrigins``; none: the request's own ``Host``, ``session.same_origin``).
    """
    if allowed_origins is None:
        settings = getattr(gateway, "settings", None)
        allowed_origins = list(settings.relay.console.allowed_origins) if settings is not None else []
    origins = tuple(allowed_origins)
    env = _environment()
    sessions = Sessions(edge)
    clock = _BusClock()

    def render(template: str, request: Request, principal: Any, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
        """The page; ``ctx`` is a dict (not keywords) so a template variable never shadows ``status``."""
        cookie = request.cookies.get(COOKIE, "")
        html = env.get_template(f"{template}.html.jinja").render(
            principal=principal, pages=_PAGES, csrf=csrf_token(cookie) if cookie else "",
            auth=sessions.enabled, can=lambda verb: _can(principal, verb), **ctx,
        )  # fmt: skip
        headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                   "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; "
                                              "frame-ancestors 'none'"}  # fmt: skip
        # A job's data may hold a string that is not Unicode (a file name that is not UTF-8): shown as \udcff.
        return HTMLResponse(html.encode("utf-8", "backslashreplace"), status_code=status, headers=headers)

    def error_page(request: Request, principal: Any, message: str, status: int) -> HTMLResponse:
        """A refusal as a page: what was wrong, and a link back (to the page without its query, else home)."""
        path = request.url.path
        back = path if request.url.query and path.startswith(f"{PREFIX}/") else f"{PREFIX}/models"
        return render("error", request, principal, {"title": "Error", "message": message, "back": back}, status)

    # The routes' own refusals (a query that does not parse, a method they do not take) are pages too.
    page_route = type("PageRoute", (_PageRoute,), {"error_page": staticmethod(error_page)})
    api = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=page_route)

    def signin_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
        response = render("signin", request, None, {"message": message}, status)
        if request.cookies.get(COOKIE):
            drop_cookie(response, request)
        return response

    def cross_site(request: Request) -> HTMLResponse | None:
        """The 403 page for a ``POST`` that does not come from the console's own pages (login CSRF
        included), else ``None``."""
        if same_origin(request, origins):
            return None
        return error_page(request, None, _CROSS_SITE, 403)

    async def page(request: Request, template: str, load: Any, verb: str = "read-artifacts") -> Response:
        """Authenticate the cookie, authorize ``verb``, load the context, render (errors as pages)."""
        from mnemos.soul.rbac import authorize

        try:
            principal = await sessions.principal(request)
        except AuthenticationError:
            return signin_page(request, status=401)
        try:
            authorize(principal, verb)  # in the API's words: the role, or the credential's scopes
            since = await clock.last()  # before loading: the page's stream resumes here, so nothing falls between
            ctx = await load(principal)
        except MnemosError as exc:
            return error_page(request, principal, exc.message, exc.status)
        return render(template, request, principal, {"since": since, **ctx})  # a page may resume from later

    async def form(request: Request) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}

    async def end_session(request: Request) -> None:
        """Revoke the token of the request's session cookie, when it holds a live one."""
        if not request.cookies.get(COOKIE):
            return
        try:
            principal = await sessions.principal(request)
        except AuthenticationError:
            return  # forged, expired or already revoked: nothing live to end
        await sessions.sign_out(principal)

    def ending_failed(request: Request, exc: MnemosError) -> HTMLResponse:
        """The session could not be revoked: say so, and keep the cookie so that the user can retry."""
        return error_page(request, None, f"Signing out failed: {exc.message}. Try again.", exc.status)

    async def write(request: Request) -> tuple[Any, dict[str, str]]:
        """The principal of a console write whose CSRF token matches its cookie."""
        principal = await sessions.principal(request)
        fields = await form(request)
        if sessions.enabled and not csrf_ok(request.cookies.get(COOKIE, ""), fields.get("csrf")):
            raise PermissionDeniedError("the form's CSRF token does not match this session; reload the page")
        return principal, fields

    @api.get("")
    @api.get("/")  # (the gateway redirects no trailing slash: a redirect would be built from the client's Host)
    async def home() -> Response:
        return RedirectResponse(f"{PREFIX}/models", status_code=303)

    @api.get("/signin")
    async def signin_form(request: Request) -> Response:
        try:
            await end_session(request)  # the page drops the cookie: its token must not outlive it
        except MnemosError as exc:
            return ending_failed(request, exc)
        return signin_page(request)

    @api.post("/signin")
    async def signin(request: Request) -> Response:
        if (refused := cross_site(request)) is not None:
            return refused
        if not sessions.enabled:
            return RedirectResponse(f"{PREFIX}/models", status_code=303)
        key = (await form(request)).get("api_key", "")
        try:
            await end_session(request)  # a new sign-in (or its refusal) replaces the cookie: end its session
        except MnemosError as exc:
            return ending_failed(request, exc)
        if not key.strip():
            return signin_page(request, "Enter an API key.", 422)
        try:
            _, token, expires = await sessions.sign_in(key, request)
        except MnemosError as exc:
            return signin_page(request, f"Sign-in refused: {exc.message}", exc.status)
        response = RedirectResponse(f"{PREFIX}/models", status_code=303)
        set_cookie(response, request, token, int(expires - time.time()))
        return response

    @api.get("/signout")
    async def signout_form(request: Request) -> Response:
        # Signing out is a POST (the header's button): a GET only shows that button, so that a link or an
        # image on another site cannot sign anyone out.
        try:
            principal = await sessions.principal(request)
        except AuthenticationError:
            return signin_page(request, status=401)
        return render("signout", request, principal, {"title": "Sign out"})

    @api.post("/signout")
    async def signout(request: Request) -> Response:
        # No CSRF check: sign-out revokes whatever the form's token. It only takes access away, so a
        # forged sign-out can at worst sign its victim out (and SameSite=Strict keeps other sites from
        # sending the cookie at all), whereas refusing it would leave live a session its user believes
        # ended, its cookie still in the browser. A form from another site's page is refused all the
        # same (a user's own sign-out always comes from the console's pages).
        if (refused := cross_site(request)) is not None:
            return refused
        try:
            await end_session(request)
        except MnemosError as exc:
            return ending_failed(request, exc)
        response = RedirectResponse(f"{PREFIX}/signin", status_code=303)
        drop_cookie(response, request)
        return response

    @api.get("/models")
    async def models(request: Request) -> Response:
        async def load(_: Any) -> dict[str, Any]:
            return {"title": "Models", "models": await asyncio.to_thread(data.model_rows, gateway)}

        return await page(request, "models", load)

    @api.get("/models/{name}")
    async def model(request: Request, name: str, a: int | None = None, b: int | None = None) -> Response:
        async def load(_: Any) -> dict[str, Any]:
            from mnemos.genome import NAME_PATTERN, Registry

            if re.fullmatch(NAME_PATTERN, name) is None:  # as the API's path pattern answers (never a storage key)
                raise ValidationError(f"name: {name[:80]!r} is not a model name (DNS-1123: lower-case letters, "
                                      "digits, '-' and '.', at most 253)", param="name")  # fmt: skip
            history = await asyncio.to_thread(Registry(gateway.engram).history, "Model", name)
            gens = [r.generation for r in history]
            diff: list[str] = []
            first: int | None
            second: int | None
            if len(gens) >= 2:
                older, newer = int(a or gens[-2] or 0), int(b or gens[-1] or 0)
                if older not in gens or newer not in gens:
                    raise ValidationError(f"a, b: generations of {name!r} are {gens}", param="a")
                diff = await asyncio.to_thread(data.diff_generations, gateway.engram, "Model", name, older, newer)
                first, second = older, newer
            else:
                first = second = gens[-1] if gens else None
            row = next((r for r in await asyncio.to_thread(data.model_rows, gateway) if r["name"] == name), None)
            return {"title": f"Model {name}", "name": name, "row": row, "history": history, "a": first,
                    "b": second, "diff": diff}  # fmt: skip

        return await page(request, "model", load)

    @api.get("/jobs")
    async def jobs(request: Request, queue: str = "", status: str = "", owner: str = "") -> Response:
        async def load(principal: Any) -> dict[str, Any]:
            rows = await data.jobs(principal, queue, status, owner)
            return {"title": "Jobs", "jobs": rows, "queue": queue, "status": status, "owner": owner,
                    "queues": sorted(gateway.settings.cortex.queues)}  # fmt: skip

        return await page(request, "jobs", load)

    @api.get("/jobs/{job_id}")
    async def job(request: Request, job_id: str) -> Response:
        async def load(principal: Any) -> dict[str, Any]:
            from mnemos.cortex.http import check_owner, cortex_handle, job_for

            seen = await _job_view(principal, job_id)  # authorized before anything is read
            since = await clock.last()  # the page's event stream starts here: no line printed after is missed
            # Viewers, and credentials scoped without execute on another's job, see that a job exists, not
            # what it printed (as GET /v1/jobs/{id}/logs answers them 403, with this reason).
            try:
                check_owner(principal, seen, logs=True)
                logs_refused = ""
            except PermissionDeniedError as exc:
                logs_refused = exc.message
            may_read_logs = not logs_refused
            parts = await cortex_handle().log_parts.remote(job_id) if may_read_logs else []
            logs, log_attempt, log_lines = shown_logs(parts)
            view = job_for(principal, await _job_view(principal, job_id))  # after the logs: no state event is skipped
            cancellable = view["status"] in ("queued", "running", "retrying") and _can(principal, "submit")
            return {"title": f"Job {job_id}", "job": view, "logs": logs, "cancellable": cancellable, "since": since,
                    "log_attempt": log_attempt, "log_lines": log_lines, "may_read_logs": may_read_logs,
                    "logs_refused": logs_refused}  # fmt: skip

        return await page(request, "job", load)

    @api.post("/jobs/{job_id}/cancel")
    async def cancel(request: Request, job_id: str) -> Response:
        if (refused := cross_site(request)) is not None:
            return refused
        try:
            principal, _ = await write(request)
            if not _can(principal, "submit"):
                raise PermissionDeniedError(f"role {principal.role!r} may not cancel jobs")
            await _job_view(principal, job_id)
            from mnemos.cortex.http import cortex_handle

            await cortex_handle().cancel.remote(job_id, principal.subject)
        except AuthenticationError:
            return signin_page(request, status=401)
        except MnemosError as exc:
            return error_page(request, None, exc.message, exc.status)
        return RedirectResponse(f"{PREFIX}/jobs/{job_id}", status_code=303)

    @api.get("/runs")
    async def runs(request: Request) -> Response:
        async def load(principal: Any) -> dict[str, Any]:
            rows = await asyncio.to_thread(data.runs, gateway.engram, principal)
            return {"title": "Pipelines and runs", "runs": rows}

        return await page(request, "runs", load)

    @api.get("/runs/{run_id}")
    async def run(request: Request, run_id: str) -> Response:
        async def load(principal: Any) -> dict[str, Any]:
            from mnemos.synkron import _state
            from mnemos.synkron.http import check_run_id, run_for

            state = await asyncio.to_thread(_state.load, gateway.engram, check_run_id(run_id))
            if not data.owns(principal, state.get("principal")):  # as for a run that does not exist (as the API)
                raise NotFoundError(f"run {run_id!r} not found", param="run_id")
            view = _state.event_view(run_for(principal, state))
            layout = data.layered(list(view["steps"]), {n: s.get("needs") or [] for n, s in view["steps"].items()})
            order = sorted(view["steps"], key=lambda n: layout["nodes"][n])  # DAG order: by depth, then row
            return {"title": f"Run {run_id}", "run": view, "layout": layout, "order": order}

        return await page(request, "run", load)

    @api.get("/lineage")
    async def lineage(request: Request, id: str = "") -> Response:
        async def load(principal: Any) -> dict[str, Any]:
            if not id:
                return {"title": "Lineage", "id": "", "graph": None}
            if len(id) > _LINEAGE_ID_MAX:  # as GET /v1/lineage/{id} answers it
                raise ValidationError(f"id: at most {_LINEAGE_ID_MAX} characters (got {len(id)})", param="id")
            from mnemos.relay.control import LineageReader
            from mnemos.soul.ownership import reads_space
            from mnemos.synkron.spaces import LINEAGE_RESOLVERS, space_owner
            from mnemos.trace.lineage import graph

            if id.startswith("space:"):  # an item of a space the caller does not search: as no such space (the API)
                space = id[len("space:") :].partition("/")[0]
                _source, owner, team = await asyncio.to_thread(space_owner, gateway.engram, space)
                if not reads_space(principal, owner, team):
                    raise NotFoundError(f"space {space!r} not found", param="space")
            # as GET /v1/lineage/{id} answers: a developer's own nodes only, others' data withheld
            g = await asyncio.to_thread(graph, gateway.engram, id, resolvers=LINEAGE_RESOLVERS,
                                        reader=LineageReader(principal))  # fmt: skip
            ids = [n["id"] for n in g["nodes"]]
            parents: dict[str, list[str]] = {}
            for edge_ in g["edges"]:
                parents.setdefault(edge_["to"], []).append(edge_["from"])
            return {"title": "Lineage", "id": id, "graph": g, "layout": data.layered(ids, parents)}

        return await page(request, "lineage", load, "read-lineage")

    @api.get("/keys")
    async def keys(request: Request) -> Response:
        async def load(principal: Any) -> dict[str, Any]:
            from mnemos.soul import IdentityStore
            from mnemos.soul.http import manages
            from mnemos.soul.rbac import authorize

            store = getattr(edge.guard, "store", None) or IdentityStore.from_settings(gateway.settings, gateway.engram)
            creds = [c for c in await asyncio.to_thread(store.list) if manages(principal, c)]  # as GET /v1/tokens
            # Usage is read with read-artifacts, as GET /v1/usage: a credential scoped to manage-identities
            # alone (an identity admin) lists credentials here, and is told why it sees no usage.
            try:
                authorize(principal, "read-artifacts")
                usage_refused = ""
            except PermissionDeniedError as exc:
                usage_refused = exc.message
            rows: list[dict[str, Any]] = []
            if not usage_refused:
                ledger = request.app.state.meter.governor.actor  # SOUL's usage ledger, as GET /v1/usage reads it
                rows = await data.usage(ledger, gateway.engram, principal=principal)  # a team's admin: its team's
            return {"title": "Keys and usage", "credentials": creds, "usage": rows, "usage_refused": usage_refused,
                    "window_h": int(data.USAGE_WINDOW_S // 3600)}  # fmt: skip

        return await page(request, "keys", load, "manage-identities")

    @api.get("/audit")
    async def audit(request: Request) -> Response:
        async def load(principal: Any) -> dict[str, Any]:  # others' events: operators and admins only
            return {"title": "Audit", "events": await asyncio.to_thread(data.audit_events, gateway.engram, principal)}

        return await page(request, "audit", load, "read-lineage")

    return api


def _not_allowed(error_page: Any, request: Request, what: str, allow: list[str]) -> Response:
    """The console's 405 page for a method this page or file does not take, with ``Allow``."""
    response: Response = error_page(request, None, f"{request.method} is not allowed here; this {what} takes "
                                    f"{', '.join(allow)}", 405)  # fmt: skip
    response.headers["Allow"] = ", ".join(allow)
    return response


class _PageRoute(APIRoute):
    """A console route whose refusals before its endpoint runs are pages (``error_page``, set by
    ``build_router``), not the API's JSON: a query parameter that does not parse (422, naming it)
    and a method the page does not take (405, with ``Allow``)."""

    error_page: Any = None

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                from mnemos.relay._errors import validation_error

                page: Response = self.error_page(request, None, validation_error(exc).message, 422)
                return page

        return handle

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        if self.methods and scope["method"] not in self.methods:
            methods = set(self.methods)  # and those of the page's other routes (GET and POST /ui/signout)
            for route in getattr(scope.get("app"), "routes", ()):
                if isinstance(route, _PageRoute) and route.methods and route.path_regex.match(scope["path"]):
                    methods |= route.methods
            allow = sorted(methods | ({"HEAD"} if "GET" in methods else set()))
            await _not_allowed(self.error_page, Request(scope, receive), "page", allow)(scope, receive, send)
            return
        await super().handle(scope, receive, send)


class _Static(StaticFiles):
    """The console's static files; a file that is not there (or a method they do not take) is the
    console's error page, as any other path under ``/ui``, not the API's JSON."""

    def __init__(self, error_page: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error_page = error_page

    async def get_response(self, path: str, scope: Any) -> Response:
        try:
            return await super().get_response(path, scope)
        except StarletteHTTPException as exc:
            if exc.status_code not in (404, 405):
                raise
            request = Request(scope)
            if exc.status_code == 405:
                return _not_allowed(self.error_page, request, "file", ["GET", "HEAD"])
            page: Response = self.error_page(request, None, f"There is no console file at {request.url.path[:200]}.",
                                             404)  # fmt: skip
            return page


class _NoPage(APIRoute):
    """Any path under ``/ui`` that no page, stream or static file lives at: a 404 page (any method;
    a method a page does not take matches that page first: 405)."""

    def __init__(self, path: str, error_page: Any) -> None:
        async def no_page() -> None:  # (never called: ``handle`` answers)
            return None

        super().__init__(path, no_page, methods=["GET"], include_in_schema=False)
        self.error_page = error_page

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        message = f"There is no console page at {request.url.path[:200]}."
        await self.error_page(request, None, message, 404)(scope, receive, send)


class _BusClock:
    """The event bus's newest id, read through one cached handle (``None`` when the bus cannot be
    reached: a page then streams from now, only less exactly)."""

    def __init__(self) -> None:
        self._handle: Any = None

    async def last(self) -> int | None:
        from mnemos.trace.events import bus

        try:
            if self._handle is None:
                self._handle = await asyncio.to_thread(bus)
            answer = await asyncio.wait_for(self._handle.last.remote(), _BUS_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - a page renders without the bus
            self._handle = None
            return None
        return int(answer)


def shown_logs(parts: list[tuple[int | None, str, str]]) -> tuple[str, int | None, int]:
    """The job page's logs, and which lines of them the page's ``job.log`` events repeat.

    Returns ``(text, attempt, lines)``: the page shows ``text`` and skips the events of ``attempt``
    numbered up to ``lines`` (a line printed while the page was read reaches it both ways). A running
    attempt's unfinished last line is left out: its event brings it whole.
    """
    if not parts:
        return "", None, 0
    attempt, status, text = parts[-1]
    if status == "running" and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        parts = [*parts[:-1], (attempt, status, text)]
    return join_logs(parts), attempt, text.count("\n")


async def _job_view(principal: Any, job_id: str) -> dict[str, Any]:
    """A job the principal may see (404 for a developer's view of another's job)."""
    from mnemos.cortex.http import cortex_handle

    try:
        view = await cortex_handle().get.remote(job_id)
    except Exception as exc:  # noqa: BLE001 - a NotFoundError raised in the actor arrives wrapped
        cause = getattr(exc, "cause", exc)
        raise cause if isinstance(cause, MnemosError) else NotFoundError(f"no job {job_id!r}") from None
    owner = view.get("owner") or view.get("principal")
    if not data.owns(principal, owner):
        raise NotFoundError(f"no job {job_id!r}", param="id")
    return {**view, "owner": owner}
