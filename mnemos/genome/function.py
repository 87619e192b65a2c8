"""``genome.mnemos.dev/v1`` Function: a registered entrypoint that jobs may call by name over HTTP.

Over HTTP, ``POST /v1/jobs`` with ``{"function": "<Function name>", "kwargs": {...}}`` runs only
Functions an operator or admin applied (verb ``apply``); ``kwargs`` are checked against
``spec.parameters`` (a JSON Schema) and the caller's role against ``spec.allowedRoles``. Calling
any other code is the verb ``execute`` (cluster root)::

    apiVersion: genome.mnemos.dev/v1
    kind: Function
    metadata: {name: word-count}
    spec:
      entrypoint: mypkg.jobs:word_count
      queue: default
      resources: {cpus: 1}
      allowedRoles: [developer, operator, admin]
      parameters:
        type: object
        properties: {text: {type: string, maxLength: 100000}}
        required: [text]
        additionalProperties: false
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from mnemos._model import CoreModel
from mnemos.genome._base import Resource

__all__ = ["Function", "FunctionResources", "FunctionSpec", "check_arguments"]

_ENTRYPOINT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_ROLES = ("admin", "operator", "developer", "viewer")


class FunctionResources(CoreModel):
    """What a call needs from the pool that runs it (as a job's ``resources``)."""

    cpus: float = Field(0.0, ge=0, description="CPUs a pool's worker must have.")
    gpus: float = Field(0.0, ge=0, description="GPUs a pool's worker must have.")
    pool: str | None = Field(None, description="Run only on this pool.")
    selector: dict[str, str] = Field(default_factory=dict, description="Labels the pool's selector must carry.")


class FunctionSpec(CoreModel):
    entrypoint: str = Field(description="'package.module:function' the job calls (public names only).")
    queue: str = Field("default", description="Queue a call goes to unless the caller names another.")
    resources: FunctionResources = Field(default_factory=FunctionResources)
    allowed_roles: list[str] = Field(
        default_factory=lambda: ["admin", "operator", "developer"],
        description="Roles that may call it (each also needs the verb submit).",
    )
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "additionalProperties": False},
        description="JSON Schema of the keyword arguments (default: none accepted).",
    )

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str) -> str:
        if not _ENTRYPOINT.fullmatch(value):
            raise ValueError(f"{value!r} is not 'package.module:function'")
        module, _, attr = value.partition(":")
        if any(part.startswith("_") for part in (*module.split("."), attr)):
            raise ValueError(f"{value!r} names a private module or function")
        return value

    @field_validator("allowed_roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        unknown = [r for r in value if r not in _ROLES]
        if unknown:
            raise ValueError(f"unknown role {unknown[0]!r}; valid roles: {', '.join(_ROLES)}")
        return value

    @field_validator("parameters")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        outside = next(_outside_refs(value), None)
        if outside is not None:
            keyword, target = outside
            raise ValueError(f"{keyword} {target!r} points outside the schema: only references within it "
                             "('#/$defs/…') are allowed; copy what it names into $defs")  # fmt: skip
        if value.get("type", "object") != "object":
            raise ValueError("the schema of keyword arguments must have type: object")
        return value


class Function(Resource):
    API_VERSION: ClassVar[str] = "genome.mnemos.dev/v1"

    api_version: str = API_VERSION
    kind: Literal["Function"] = "Function"
    spec: FunctionSpec


_REF_KEYWORDS = ("$ref", "$dynamicRef")


def _outside_refs(schema: Any) -> Iterator[tuple[str, str]]:
    """Each ``$ref``/``$dynamicRef`` of ``schema`` that names anything but a place within it (``#…``)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in _REF_KEYWORDS and not (isinstance(value, str) and value.startswith("#")):
                yield key, str(value)[:200]
            yield from _outside_refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _outside_refs(item)


def check_arguments(function: Function, kwargs: dict[str, Any], *, param: str = "kwargs") -> None:
    """Raise ``ValidationError`` (422) naming the first argument that breaks ``spec.parameters``.

    References are resolved within the schema only (an empty ``referencing.Registry``): nothing is
    ever fetched from a URL or read from a file, whatever a stored schema names."""
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    from mnemos.errors import ValidationError

    validator = Draft202012Validator(function.spec.parameters, registry=Registry())
    try:
        errors = sorted(validator.iter_errors(kwargs), key=lambda e: (len(e.absolute_path), e.message))
    except Unresolvable as exc:  # a schema stored before outside references were refused
        raise ValidationError(f"function {function.name!r}: its parameters schema names {exc.ref!r}, outside "
                              "itself, which is never fetched: re-apply the Function with it in $defs",
                              param="function") from None  # fmt: skip
    if errors:
        err = errors[0]
        path = ".".join(str(p) for p in (param, *err.absolute_path))
        raise ValidationError(f"{path}: {err.message[:300]} (function {function.name!r} parameters)", param=path)
