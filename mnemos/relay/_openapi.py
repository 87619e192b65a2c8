"""The gateway's OpenAPI says what the gateway does: every status documented, 405 with ``Allow``.

Two pieces, both built from the app's own OpenAPI document so that they cannot drift from it:

- ``complete_openapi(app)`` adds to every operation the statuses the edge can answer before the
  route runs (401, 403, 429 and 503 unless the path is public; 413 where a body is read) and gives
  every error status OpenAI's error body (``ErrorResponse``) instead of FastAPI's ``detail`` shape.
- ``MethodGuard`` answers a method that no operation on the path declares with 405 and ``Allow``
  (OPTIONS included). Path parameters are matched with their declared ``pattern``, so
  ``GET /apis/g/v1/models:diff`` is a 405 (only ``POST …:diff`` lives there), not a 422 from the
  list route. Paths that no operation matches pass through (404 or the route's own 422).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic_core import to_json

from mnemos.relay._edge import _route_path
from mnemos.relay.openai_schema import ErrorResponse

__all__ = ["MethodGuard", "complete_openapi"]

_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
_EDGE = {
    401: "no credential, or an invalid, expired or revoked one",
    403: "the credential's role or scopes lack the route's verb",
    429: "over the caller's rate limit (Retry-After says when to retry)",
    503: "a platform service (actor) the route needs is not available; retry",
}
_TOO_LARGE = "the body is over relay.maxBodyBytes"
_ERROR_REF = "#/components/schemas/ErrorResponse"


def _error_content() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _ERROR_REF}}}


def _hoist_defs(op: dict[str, Any], components: dict[str, Any]) -> None:
    """Move a body schema's pydantic ``$defs`` into ``components.schemas`` (where OpenAPI resolves them)."""
    for media in op.get("requestBody", {}).get("content", {}).values():
        schema = media.get("schema", {})
        defs = schema.pop("$defs", None)
        if not defs:
            continue
        for name, sub in defs.items():
            components.setdefault(name, sub)
        media["schema"] = _rewrite_refs(schema)
        for name in defs:
            components[name] = _rewrite_refs(components[name])


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str)
                    else _rewrite_refs(v)) for k, v in node.items()}  # fmt: skip
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _complete_operation(op: dict[str, Any], public: bool, auth: bool) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    if not public:
        for code, description in _EDGE.items():
            if auth or code == 503:
                responses.setdefault(str(code), {"description": description})
        if auth:
            op["security"] = [{"bearer": []}]
    if "requestBody" in op:
        responses.setdefault("413", {"description": _TOO_LARGE})
    for code, response in responses.items():
        if code[:1] in ("4", "5"):
            response["content"] = _error_content()  # our handlers answer every error in this shape


def complete_openapi(app: FastAPI, public_paths: frozenset[str], auth: bool,
                     named: tuple[type[BaseModel], ...] = ()) -> None:
    """Make ``app.openapi()`` document the edge's statuses and the error body of every operation.

    Args:
        app: the gateway's app, its routes all included.
        public_paths: paths admitted without a credential.
        auth: whether ``relay.auth`` is on (then the other operations need ``Authorization: Bearer``).
        named: models the operations refer to by ``#/components/schemas/NAME`` that no route's
            body or response model brings there (``ErrorResponse`` always is).
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        models = schema.setdefault("components", {}).setdefault("schemas", {})
        for path, item in schema.get("paths", {}).items():
            for method, op in item.items():
                if method in _HTTP_METHODS:
                    _complete_operation(op, path in public_paths, auth)
                    _hoist_defs(op, models)
        if auth:
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["bearer"] = {"type": "http", "scheme": "bearer", "description": "A SOUL token (JWT) or API key."}
        for model in (ErrorResponse, *named):
            sub = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, nested in sub.pop("$defs", {}).items():
                models.setdefault(name, nested)
            models.setdefault(model.__name__, sub)
        for unused in ("HTTPValidationError", "ValidationError"):
            if unused in models and unused not in to_json(schema.get("paths", {})).decode():
                del models[unused]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class _Template:
    """One OpenAPI path as a regular expression; parameters with a ``pattern`` must match it."""

    def __init__(self, path: str, params: dict[str, str | None], methods: set[str]) -> None:
        self.methods = methods
        self.params = {name: re.compile(p) if p else None for name, p in params.items()}
        parts = re.split(r"\{([^}]+)\}", path)
        regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{_group(part)}>[^/]+)" for i, part in enumerate(parts))
        self.names = {_group(name): name for name in parts[1::2]}
        self.regex = re.compile(f"^{regex}$")

    def matches(self, path: str, strict: bool) -> bool:
        found = self.regex.match(path)
        if found is None:
            return False
        if not strict:
            return True
        for group, value in found.groupdict().items():
            pattern = self.params.get(self.names[group])
            if pattern is not None and pattern.search(value) is None:
                return False
        return True


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


def _templates(schema: dict[str, Any]) -> list[_Template]:
    out = []
    for path, item in schema.get("paths", {}).items():
        methods = {m.upper() for m in item if m in _HTTP_METHODS}
        params: dict[str, str | None] = {}
        for method in methods:
            for param in item[method.lower()].get("parameters", []):
                if param.get("in") == "path":
                    params[param["name"]] = (param.get("schema") or {}).get("pattern")
        out.append(_Template(path, params, methods))
    return out


class MethodGuard:
    """Answer 405 with ``Allow`` for a method no operation on the path declares (pure ASGI).

    A ``HEAD`` reaches it as the ``GET`` it is served as (``_edge.HeadAsGet``, outside it), so
    ``Allow`` names ``HEAD`` wherever ``GET`` is declared.

    Args:
        app: the ASGI app behind it.
        openapi: returns the app's OpenAPI document (read once, on the first request).
    """

    def __init__(self, app: Any, openapi: Any) -> None:
        self.app = app
        self._openapi = openapi
        self._templates: list[_Template] | None = None
        # Every request asks: remembered per path (routes are fixed), bounded against random paths.
        self.allowed = functools.lru_cache(maxsize=4096)(self._allowed)

    def _allowed(self, path: str) -> frozenset[str] | None:
        """The methods declared for ``path`` (None: no operation lives there)."""
        if self._templates is None:
            self._templates = _templates(self._openapi())
        for strict in (True, False):
            methods: set[str] = set()
            matched = False
            for template in self._templates:
                if template.matches(path, strict):
                    matched = True
                    methods |= template.methods
            if matched:
                return frozenset(methods)
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        allowed = self.allowed(_route_path(scope))
        if allowed is None or method in allowed:
            await self.app(scope, receive, send)
            return
        allow = ", ".join(sorted(allowed | ({"HEAD"} if "GET" in allowed else set())))
        error = {"message": f"{method} is not allowed here; allowed: {allow}", "type": "invalid_request_error",
                 "param": None, "code": "method_not_allowed"}  # fmt: skip
        body = to_json({"error": error})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"allow", allow.encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": 405, "headers": headers})
        await send({"type": "http.response.body", "body": body})
