"""``genome.mnemos.dev/v1`` Function: a registered entrypoint that jobs may call by name over HTTP.

Over HTTP, ``POST /v1/jobs`` with ``{"function": "<Function name>", "kwargs": {...}}`` runs only
Functions an operator or admin applied (verb ``apply``); ``kwargs`` are checked against
``spec.parameters`` (a JSON Schema) and the caller's role against ``spec.allowedRoles``. Calling
any other code is the verb ``execute`` (cluster root). The local deployment registers this one
(``deployments/local/functions.yaml``)::

    apiVersion: genome.mnemos.dev/v1
    kind: Function
    metadata: {name: word-count}
    spec:
      entrypoint: mnemos.examples:word_count
      queue: default
      resources: {cpus: 0.5}
      allowedRoles: [developer, operator, admin]
      parameters:
        type: object
        properties: {text: {type: string, maxLength: 100000}}
        required: [text]
        additionalProperties: false
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Iterator
from typing import Any, ClassVar, Literal
from urllib.parse import unquote

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
    selector: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="Labels the pool's selector must carry (at most 64).")


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
        _check_patterns(value)
        _check_local_refs(value)
        if value.get("type", "object") != "object":
            raise ValueError("the schema of keyword arguments must have type: object")
        return value


class Function(Resource):
    API_VERSION: ClassVar[str] = "genome.mnemos.dev/v1"

    api_version: str = API_VERSION
    kind: Literal["Function"] = "Function"
    spec: FunctionSpec


_REF_KEYWORDS = ("$ref", "$dynamicRef")
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})  # their values are data, not schemas
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_MAX_REF_CHAIN = 32  # $refs followed one after another without descending into a property or item
_MAX_REF_EXPANSION = 10_000  # schemas one value is checked against through $refs (allOf: [$ref a, $ref a]…)
_PATTERN_TIMEOUT_S = 0.05  # one match of a pattern (a catastrophic one would otherwise run for ages)
_PATTERN_BUDGET_S = 0.25  # all matches of one call together
_DEEP_KWARGS = 64


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


def _schema_dicts(schema: Any) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each object of ``schema`` outside ``const``/``enum``/``default``/``examples`` values, with the
    resource it lies in (the nearest enclosing object with an ``$id``, else the root)."""
    stack: list[tuple[Any, Any, bool]] = [(schema, schema, False)]
    while stack:
        node, resource, names = stack.pop()  # names: an object whose keys are names (properties: …)
        if isinstance(node, list):
            stack.extend((item, resource, False) for item in reversed(node))
        elif isinstance(node, dict):
            if not names:
                if isinstance(node.get("$id"), str):
                    resource = node
                yield node, resource
            for key, value in reversed(node.items()):
                if names or key not in _DATA_KEYWORDS:
                    stack.append((value, resource, not names and key in _SCHEMA_MAPS and isinstance(value, dict)))


# --- patterns: matched with `regex` under a timeout, never with `re` -----------------------------------


class _PatternTooSlow(Exception):
    def __init__(self, pattern: str, value: str) -> None:
        super().__init__(pattern)
        self.pattern, self.value = pattern, value


class _BrokenSchema(Exception):
    """A stored schema that cannot be evaluated (one applied before it was checked this well)."""


_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("mnemos_function_pattern_deadline",
                                                                         default=None)  # fmt: skip


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    import regex

    return regex.compile(pattern)


def _search(pattern: str, value: str) -> bool:
    """``re.search(pattern, value)``, by the ``regex`` module, giving up (``_PatternTooSlow``) after
    ``_PATTERN_TIMEOUT_S``, or sooner once the call's ``_PATTERN_BUDGET_S`` is spent."""
    import regex

    try:
        compiled = _compiled(pattern)
    except (regex.error, TypeError) as exc:
        raise _BrokenSchema(f"its pattern {pattern!r:.200} does not compile ({exc})") from None
    deadline = _DEADLINE.get()
    left = _PATTERN_TIMEOUT_S if deadline is None else min(_PATTERN_TIMEOUT_S, deadline - time.monotonic())
    if left <= 0:
        raise _PatternTooSlow(pattern, value)
    try:
        return compiled.search(value, timeout=left) is not None
    except TimeoutError:
        raise _PatternTooSlow(pattern, value) from None


def _check_patterns(schema: dict[str, Any]) -> None:
    """Every pattern compiles with ``regex``; and no ``unevaluatedProperties`` beside ``patternProperties``
    (jsonschema matches those with ``re`` inside that keyword, out of reach of the timeout)."""
    import regex

    dicts = list(_schema_dicts(schema))
    if any("unevaluatedProperties" in node for node, _ in dicts) and any("patternProperties" in node
                                                                          for node, _ in dicts):  # fmt: skip
        raise ValueError("unevaluatedProperties with patternProperties is not supported here: use "
                         "additionalProperties beside patternProperties")  # fmt: skip
    for node, _ in dicts:
        patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns += list(node["patternProperties"])
        for pattern in patterns:
            try:
                _compiled(pattern)
            except regex.error as exc:
                raise ValueError(f"pattern {pattern!r:.200} does not compile: {exc}") from None


def _keyword_pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError as SchemaMismatch

    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield SchemaMismatch(f"{instance!r:.200} does not match {pattern!r}")


def _keyword_pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _keyword_additional_properties(validator: Any, extra: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """jsonschema's ``additionalProperties``, matching ``patternProperties`` by ``_search``."""
    from jsonschema.exceptions import ValidationError as SchemaMismatch

    if not validator.is_type(instance, "object"):
        return
    properties, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
    extras = [k for k in instance if k not in properties and not any(_search(p, k) for p in patterns)]
    if validator.is_type(extra, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra, path=key)
    elif not extra and extras:
        names = ", ".join(repr(k) for k in sorted(extras))
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            yield SchemaMismatch(f"{names} {verb} not match any of the regexes: "
                                 + ", ".join(repr(p) for p in sorted(patterns)))  # fmt: skip
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield SchemaMismatch(f"Additional properties are not allowed ({names} {verb} unexpected)")


@functools.cache
def _validator_class() -> Any:
    from jsonschema import Draft202012Validator
    from jsonschema.validators import extend

    return extend(Draft202012Validator, {
        "pattern": _keyword_pattern,
        "patternProperties": _keyword_pattern_properties,
        "additionalProperties": _keyword_additional_properties,
    })  # fmt: skip


# --- local references: each must name a schema in the document, and none may loop ---------------------


def _pointer(resource: Any, fragment: str) -> Any:
    """What the JSON pointer ``fragment`` (percent-decoded, ``~1``/``~0`` unescaped) names, else ``...``."""
    node = resource
    for token in fragment.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return ...
    return node


def _anchors(dicts: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[tuple[Any, str], list[dict[str, Any]]]:
    """``(id of a resource, name)`` -> the objects with that ``$anchor``/``$dynamicAnchor`` in it, and
    ``(None, name)`` -> those with that ``$dynamicAnchor`` anywhere (where a ``$dynamicRef`` may land)."""
    index: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for node, resource in dicts:
        for keyword in ("$anchor", "$dynamicAnchor"):
            name = node.get(keyword)
            if isinstance(name, str):
                index.setdefault((id(resource), name), []).append(node)
                if keyword == "$dynamicAnchor":
                    index.setdefault((None, name), []).append(node)
    return index


def _ref_targets(keyword: str, ref: str, resource: dict[str, Any], anchors: dict[tuple[Any, str], Any]) -> list[Any]:
    fragment = unquote(ref[1:])
    if fragment == "" or fragment.startswith("/"):
        target = _pointer(resource, fragment)
        return [target] if isinstance(target, dict | bool) else []
    targets = list(anchors.get((id(resource), fragment), []))
    if keyword == "$dynamicRef":
        targets += anchors.get((None, fragment), [])
    return targets


def _in_place(schema: Any) -> Iterator[dict[str, Any]]:
    """``schema`` and the subschemas applied to the same value as it (allOf, not, if/then…)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield node
        for keyword in ("allOf", "anyOf", "oneOf"):
            if isinstance(node.get(keyword), list):
                stack.extend(node[keyword])
        stack.extend(node.get(keyword) for keyword in ("not", "if", "then", "else"))
        if isinstance(node.get("dependentSchemas"), dict):
            stack.extend(node["dependentSchemas"].values())


def _check_local_refs(schema: dict[str, Any]) -> None:
    """Refuse a ``$ref``/``$dynamicRef`` that names nothing in ``schema``, and ``$ref``s that, followed
    without descending into a property or an item, loop or chain past ``_MAX_REF_CHAIN`` (checking a
    call against them would recurse without end) or fan out past ``_MAX_REF_EXPANSION``."""
    dicts = list(_schema_dicts(schema))
    anchors = _anchors(dicts)
    refs: dict[int, list[tuple[str, str, Any]]] = {}  # id of an object -> (keyword, ref, schema named) of its refs
    for node, resource in dicts:
        refs[id(node)] = []  # assigned, not added to: the same object may sit twice in a schema built in Python
        for keyword in _REF_KEYWORDS:
            ref = node.get(keyword)
            if isinstance(ref, str) and ref.startswith("#"):
                found = _ref_targets(keyword, ref, resource, anchors)
                if not found:
                    raise ValueError(f"{keyword} {ref!r:.200} names nothing in the schema: it must point at a "
                                     "schema within it, e.g. '#/$defs/name'")  # fmt: skip
                refs[id(node)] += [(keyword, ref, target) for target in found]

    done: dict[int, tuple[int, int]] = {}  # id of a schema -> (longest chain, schemas checked) from it
    on_path: set[int] = set()

    def follow(node: Any, trail: tuple[str, ...]) -> tuple[int, int]:
        """The longest chain of $refs from ``node`` and the schemas a value is checked against there;
        ``trail``: the $refs followed to reach it."""
        if not isinstance(node, dict):
            return 0, 1
        if id(node) not in done:
            on_path.add(id(node))
            longest, expansion = 0, 1
            for keyword, ref, target in (named for part in _in_place(node) for named in refs.get(id(part), [])):
                where, chain = f"{keyword} {ref!r:.200}", (*trail, ref)
                if id(target) in on_path:
                    raise ValueError(f"{where} loops back on itself ({' -> '.join(chain):.600}): refer back only "
                                     "below a property or an item")  # fmt: skip
                if len(chain) + done.get(id(target), (0, 0))[0] > _MAX_REF_CHAIN:  # also bounds the recursion
                    raise ValueError(f"{where} makes a chain of more than {_MAX_REF_CHAIN} $refs followed in turn "
                                     f"(from {chain[0]!r:.200})")  # fmt: skip
                depth, count = follow(target, chain)
                longest, expansion = max(longest, depth + 1), expansion + count
                if expansion > _MAX_REF_EXPANSION:
                    raise ValueError(f"{where} makes one value be checked against more than {_MAX_REF_EXPANSION} "
                                     "schemas")  # fmt: skip
            on_path.discard(id(node))
            done[id(node)] = longest, expansion
        return done[id(node)]

    for node, _ in dicts:
        follow(node, ())


# --- a call ---------------------------------------------------------------------------------------------


def _where(value: Any, kwargs: Any) -> tuple[list[Any], bool]:
    """The path in ``kwargs`` of ``value`` (the object itself first, else an equal one), and whether it is
    an object's key rather than a value there."""
    for same in (lambda a, b: a is b, lambda a, b: a == b):
        stack: list[tuple[Any, list[Any]]] = [(kwargs, [])]
        while stack:
            node, path = stack.pop()
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for key, item in items:
                if isinstance(node, dict) and same(key, value):
                    return [*path, key], True
                if same(item, value):
                    return [*path, key], False
                stack.append((item, [*path, key]))
    return [], False


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list) and depth <= _DEEP_KWARGS:
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in (node.values() if isinstance(node, dict) else node))
    return deepest


def check_arguments(function: Function, kwargs: dict[str, Any], *, param: str = "kwargs") -> None:
    """Raise ``ValidationError`` (422) naming the first argument that breaks ``spec.parameters``.

    References are resolved within the schema only (an empty ``referencing.Registry``): nothing is
    ever fetched from a URL or read from a file, whatever a stored schema names. Patterns are
    matched by the ``regex`` module under a timeout, so a catastrophic one (``(a|a)+$``) is a 422
    on the value it is slow on, never a stalled gateway; a stored schema that cannot be evaluated
    (a ``$ref`` loop, a dangling ``$ref``) is a 422 naming ``function``, never a 500."""
    from referencing import Registry
    from referencing.exceptions import InvalidAnchor, NoSuchAnchor, PointerToNowhere, Unresolvable

    from mnemos.errors import ValidationError

    name = function.name

    def broken(why: object) -> ValidationError:
        return ValidationError(f"function {name!r}: its parameters schema is broken ({why}): an operator must "
                               "re-apply the Function", param="function")  # fmt: skip

    validator = _validator_class()(function.spec.parameters, registry=Registry())
    deadline = _DEADLINE.set(time.monotonic() + _PATTERN_BUDGET_S)
    try:
        errors = sorted(validator.iter_errors(kwargs), key=lambda e: (len(e.absolute_path), e.message))
    except _PatternTooSlow as slow:
        where, is_key = _where(slow.value, kwargs)
        path = ".".join(str(p) for p in (param, *where))
        what = "name" if is_key else "value"
        raise ValidationError(f"{path}: the pattern of function {name!r} takes too long on this {what} "
                              f"({slow.pattern!r:.100})", param=path) from None  # fmt: skip
    except Unresolvable as exc:
        cause, ref = getattr(exc, "_wrapped", exc), str(getattr(exc, "ref", ""))
        if isinstance(cause, PointerToNowhere):
            ref = f"#{ref}"
        elif isinstance(cause, NoSuchAnchor | InvalidAnchor):
            ref = f"#{cause.anchor}"
        else:  # a schema stored before outside references were refused
            raise ValidationError(f"function {name!r}: its parameters schema names {ref!r}, outside itself, which "
                                  "is never fetched: re-apply the Function with it in $defs",
                                  param="function") from None  # fmt: skip
        raise broken(f"$ref {ref!r:.200} names nothing in it") from None
    except _BrokenSchema as exc:
        raise broken(exc) from None
    except RecursionError:
        if _depth(kwargs) >= _DEEP_KWARGS:
            raise ValidationError(f"{param}: nested too deeply (past {_DEEP_KWARGS} levels)", param=param) from None
        raise broken("its $refs loop") from None
    finally:
        _DEADLINE.reset(deadline)
    if errors:
        err = errors[0]
        path = ".".join(str(p) for p in (param, *err.absolute_path))
        message, value = err.message, repr(err.instance)
        if len(value) > 80:  # the value is cut, not the message: "'a a a …' is too long" said nothing of why
            message = message.replace(value, f"{value[:60]}… ({len(value)} characters)")
        raise ValidationError(f"{path}: {message[:300]} (function {function.name!r} parameters)", param=path)
