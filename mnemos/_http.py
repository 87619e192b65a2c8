"""The JSON answer every MNEMOS route gives (FastAPI's default response class in the gateway)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse as _StarletteJSONResponse

from mnemos._model import dump_json

__all__ = ["JSONResponse"]


class JSONResponse(_StarletteJSONResponse):
    """Starlette's ``JSONResponse``, encoded by :func:`~mnemos._model.dump_json`: faster, and a
    string that is not Unicode (a job's result naming a file whose name is not UTF-8) is sent as a
    ``\\udcff`` escape instead of failing the answer with a 500."""

    def render(self, content: Any) -> bytes:
        return dump_json(content)
