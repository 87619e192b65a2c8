"""What every MNEMOS route shares: the JSON answer (FastAPI's default response class in the
gateway) and the check that refuses a query parameter a route does not take."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse as _StarletteJSONResponse

from mnemos._model import dump_json

__all__ = ["JSONResponse", "check_query", "declared_query"]


class JSONResponse(_StarletteJSONResponse):
    """Starlette's ``JSONResponse``, encoded by :func:`~mnemos._model.dump_json`: faster, and a
    string that is not Unicode (a job's result naming a file whose name is not UTF-8) is sent as a
    ``\\udcff`` escape instead of failing the answer with a 500."""

    def render(self, content: Any) -> bytes:
        return dump_json(content)


async def declared_query(request: Request) -> None:
    """A router dependency: a query parameter the matched route does not declare (``?foo=1``, a
    typo of a filter), or one given twice, is a 422 naming it (and the ones the route takes), never
    ignored. The declared ones are read from the route itself, so a new route is checked too."""
    from fastapi.dependencies.utils import get_flat_dependant

    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    fields = get_flat_dependant(dependant).query_params if dependant is not None else []
    check_query(request, *(field.alias for field in fields))


def check_query(request: Request, *known: str) -> None:
    """Refuse a query parameter the route does not take, or one given twice (422 naming it), rather
    than ignore it or keep one of its values."""
    from mnemos.errors import ValidationError

    params = request.query_params
    unknown = sorted(set(params) - set(known))
    if unknown:
        name = unknown[0][:80]
        takes = f"it takes {', '.join(known)}" if known else "it takes none"
        raise ValidationError(f"{name}: not a query parameter of this route ({takes})", param=name)
    twice = sorted(k for k in set(params) if len(params.getlist(k)) > 1)
    if twice:
        raise ValidationError(f"{twice[0]}: given more than once; give it once", param=twice[0])
