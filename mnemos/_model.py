"""The one pydantic base for every MNEMOS resource and config model."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError, PydanticSerializationError, to_json, to_jsonable_python

from mnemos.errors import BadRequestError, UnsupportedMediaTypeError, ValidationError

__all__ = [
    "POSITIVE_DURATION_PATTERN",
    "CoreModel",
    "Duration",
    "PositiveDuration",
    "MAX_JSON_DEPTH",
    "TOO_DEEP",
    "check_json_body",
    "check_node_list",
    "check_timeout",
    "check_work_items",
    "is_integral",
    "dump_json",
    "format_duration",
    "utc_timestamp",
    "json_body",
    "parse_json",
    "positive_duration_schema",
    "to_validation_error",
    "validate_json",
]

M = TypeVar("M", bound=BaseModel)


class CoreModel(BaseModel):
    """Base of every resource and settings model.

    ``extra="forbid"`` is deliberate: a typo in YAML (``engin:``) is reported with its path
    instead of being silently dropped. Numbers are finite: YAML's ``.inf``/``.nan`` (or JSON's
    ``1e999``) in a price, budget or duration is refused with its path, not stored where every
    later JSON answer that carries it would fail. Fields are snake_case in Python and camelCase
    in YAML, as in Kubernetes and the seed's Helm values; both spellings are accepted on input.
    """

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        validate_assignment=True,
        allow_inf_nan=False,
    )

    def dump(self) -> dict[str, Any]:
        """The document as users write it: camelCase keys, no unset optionals."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
POSITIVE_DURATION_PATTERN = r"^\s*(\d*[1-9]\d*(\.\d+)?|\d+\.\d*[1-9]\d*)\s*(ms|s|m|h|d)?\s*$"
"""A duration string above zero (``30s``, ``1.5h``), for published schemas (``_DURATION`` also takes 0)."""
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def _to_seconds(value: Any) -> Any:
    seconds = value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value[:40]!r} is not a duration: use a number of seconds or '500ms', '30s', '5m', "
                             "'1h', '1d'")  # fmt: skip
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if isinstance(seconds, float) and seconds - seconds != 0:  # "9" * 400: a float too large is inf
        raise ValueError(f"{str(value)[:40]!r} is not a duration: it is longer than any clock counts")
    return seconds


def _parse_duration(value: Any) -> Any:
    seconds = _to_seconds(value)
    if isinstance(seconds, float) and seconds < 0:  # a number: the pattern takes no sign
        raise PydanticCustomError("duration", "must not be negative (e.g. 30s, 5m)")
    return seconds


def _parse_positive_duration(value: Any) -> Any:
    seconds = _to_seconds(value)
    if isinstance(seconds, float) and seconds <= 0:
        raise PydanticCustomError("duration", "must be more than 0 (e.g. 30s, 5m)")
    return seconds


def positive_duration_schema() -> list[dict[str, Any]]:
    """The JSON Schema ``anyOf`` of an optional positive ``Duration``: seconds, a string, or null."""
    return [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": POSITIVE_DURATION_PATTERN},
            {"type": "null"}]  # fmt: skip


def check_timeout(timeout: Any) -> None:
    """Seconds to wait, or ``None``: the SDKs' ``timeout=`` (``"30s"`` was a ``TypeError`` mid-wait)."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise ValidationError(f"timeout: expected seconds (a number) or None, got {type(timeout).__name__} "
                              f"{timeout!r}", param="timeout")  # fmt: skip


def check_node_list(nodes: Any, param: str = "parents") -> None:
    """A list of lineage nodes, not one string (iterated, ``"run:x"`` was the nodes 'r', 'u', 'n' …)."""
    if isinstance(nodes, (str, bytes)):
        raise ValidationError(f"{param}: a list of lineage nodes ([{nodes!r}]), not one str", param=param)


def check_work_items(arguments: Any) -> None:
    """``submit_many``'s ``arguments``: a list, one item per job."""
    if not isinstance(arguments, Iterable) or isinstance(arguments, (str, bytes, dict)):
        raise ValidationError(f"arguments: expected a list, one item per job (a tuple of positional arguments, a "
                              f"dict of keyword arguments, or one argument), got {type(arguments).__name__}",
                              param="arguments")  # fmt: skip


def utc_timestamp(seconds: float | None = None) -> str:
    """``seconds`` since the epoch (default: now) as the registry writes times: ISO 8601, UTC, to the second."""
    when = dt.datetime.now(dt.timezone.utc) if seconds is None else dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    return when.isoformat(timespec="seconds")


def format_duration(seconds: float) -> str:
    """``seconds`` as the shortest duration string that parses back to the same number."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds < 1 and (seconds * 1000).is_integer() and float(f"{int(seconds * 1000)}e-3") == seconds:
        return f"{int(seconds * 1000)}ms"
    return f"{format(Decimal(repr(seconds)), 'f')}s"  # 1e-07 → "0.0000001s": the pattern takes no exponent


Duration = Annotated[
    float,
    BeforeValidator(_parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""Seconds, written as in the seed: ``1s``, ``30s``, ``5m``, ``1h`` (plain numbers are seconds); never negative."""

PositiveDuration = Annotated[
    float,
    BeforeValidator(_parse_positive_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A ``Duration`` above zero: what a timeout or an interval means (``0`` and ``-5`` are refused)."""


def to_validation_error(exc: PydanticValidationError, prefix: str = "") -> ValidationError:
    """Turn pydantic's error into ours, naming the first failing field path.

    A field name is cut to its first ``_NAME_SHOWN`` characters and at most ``_ERRORS_SHOWN`` errors are
    said: a body of one unknown 1 MB key (or of ten thousand keys) was echoed whole, in the message
    and again in ``param``."""
    lines = []
    first_path = None
    errors = exc.errors()
    for err in errors[:_ERRORS_SHOWN]:
        path = ".".join(_shown_part(p) for p in err["loc"])
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        first_path = first_path or path
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "extra field not permitted"
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # our validator's own words, without pydantic's "Value error, "
        lines.append(f"{path}: {msg}" if path else msg)
    if len(errors) > _ERRORS_SHOWN:
        lines.append(f"and {len(errors) - _ERRORS_SHOWN} more")
    return ValidationError("; ".join(lines), param=first_path)


_NAME_SHOWN = 100
_ERRORS_SHOWN = 20


def _shown_part(part: Any) -> str:
    text = str(part)
    return text if len(text) <= _NAME_SHOWN else f"{text[:_NAME_SHOWN]}…"


def validate_json(model: type[M], data: Any, prefix: str = "") -> M:
    """``data`` (parsed JSON) as a ``model``, with JSON's types as the published schema states them.

    Strict, so ``"1"`` is not a number and ``1`` not a boolean (pydantic's lax mode would take
    both, where the schema says they are invalid); but a number with no fraction (``2.0``, ``1e3``)
    is an integer, as JSON Schema says, where strict mode alone would refuse it. Errors are our
    ``ValidationError`` (422) naming the first failing field, under ``prefix``. Such numbers are
    made integers in ``data`` itself.
    """
    try:
        return model.model_validate(data, strict=True)
    except PydanticValidationError as exc:
        integral = [e["loc"] for e in exc.errors() if e["type"] == "int_type" and is_integral(e["input"])]
        if not integral or not all(_set_integer(data, loc) for loc in integral):
            raise to_validation_error(exc, prefix) from None
    try:
        return model.model_validate(data, strict=True)
    except PydanticValidationError as exc:
        raise to_validation_error(exc, prefix) from None


def is_integral(value: Any) -> bool:
    """Whether ``value`` is a float without a fraction (``2.0``, ``1e3``): an integer, as JSON Schema has it."""
    return isinstance(value, float) and value.is_integer()


def _set_integer(data: Any, loc: tuple[int | str, ...]) -> bool:
    """Make the float at ``loc`` of ``data`` an ``int``; False when ``loc`` does not lead to it."""
    *path, last = loc
    for step in path:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        data[last] = int(data[last])
    except (KeyError, IndexError, TypeError):
        return False
    return True


TOO_DEEP = ("nests too deeply (lists and objects within each other about a thousand levels down); "
            "write a flatter document")
"""What the parsers of JSON and YAML input say of a document that exhausts Python's recursion."""


def dump_json(value: Any) -> bytes:
    """``value`` as compact JSON bytes, which never fails for a ``str`` that is not Unicode.

    pydantic-core's encoder takes about a quarter of ``json.dumps``'s time but refuses a ``str``
    holding a lone surrogate, which is how Python names a file whose name is not UTF-8
    (``os.fsdecode(b"\\xff")``) and what a job may return or print. ``json.dumps`` writes it as a
    ``\\udcff`` escape (valid JSON, read back as the same string): a stored log segment, an answer
    or an event carrying it is then written, not lost or turned into a 500. An infinite or NaN
    float (input refuses them; arithmetic may still make one) is ``null``: JSON has no such number.
    """
    try:
        return to_json(value, inf_nan_mode="null")
    except PydanticSerializationError:
        return json.dumps(to_jsonable_python(value, inf_nan_mode="null"), separators=(",", ":")).encode()


class _BadNumber(ValueError):
    """A number in a JSON text that no answer could carry back: ``NaN``, ``Infinity``, one beyond a
    float's range, or an integer longer than Python converts (``sys.get_int_max_str_digits()``)."""


def _not_a_number(name: str) -> float:
    raise _BadNumber(f"{name} is not a finite number")  # Python's json takes NaN and Infinity; JSON has neither


def _finite(text: str) -> float:
    value = float(text)
    if value - value != 0:  # inf or nan
        raise _BadNumber(f"{text} is not a finite number")
    return value


def _integer(text: str) -> int:
    limit, digits = sys.get_int_max_str_digits(), len(text.lstrip("-"))
    if limit and digits > limit:
        raise _BadNumber(f"an integer of {digits} digits is too long (at most {limit})")
    return int(text)


def yaml_problem(exc: Exception) -> str:
    """A YAML parser's error as one line with its place: ``line 2, column 2: expected ',' or ']', but
    got ':' (while parsing a flow sequence from line 1, column 4)``; PyYAML's own text spans lines
    and points with a caret at ``"<unicode string>"``."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem:
        return " ".join(str(exc).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None:
        context = f"{context} from line {start.line + 1}, column {start.column + 1}"
    return f"{where}{problem}" + (f" ({context})" if context else "")


def parse_json(raw: bytes, param: str | None = None) -> Any:
    """A request body's JSON value, or a 400 naming ``param`` that says why it is not JSON: bad
    syntax, bytes that are not UTF-8 text, ``NaN``/``Infinity``/``1e999`` or an integer of
    thousands of digits (no JSON answer could carry it back), or what ``check_json_body`` refuses
    (an object that repeats a key too, named by its path under ``param``)."""
    keys = _KeyCheck()
    try:
        value = json.loads(raw, parse_constant=_not_a_number, parse_float=_finite, parse_int=_integer,
                           object_pairs_hook=keys)  # fmt: skip
    except _BadNumber as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}", param=param) from None
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc.msg}", param=param) from None
    except UnicodeDecodeError as exc:  # bytes that are not UTF-8 (or -16/-32) text: often a compressed body
        byte = exc.object[exc.start]
        raise BadRequestError(f"the request body is not valid JSON: not UTF-8 text (byte 0x{byte:02x} at offset "
                              f"{exc.start}); send it as UTF-8, uncompressed", param=param) from None  # fmt: skip
    except RecursionError:
        raise BadRequestError(f"the request body {TOO_DEEP}", param=param) from None
    _check_parsed(raw, value, keys, param)
    return value


MAX_JSON_DEPTH = 64
"""How deep lists and objects may nest in a request body (vLLM's bound for a JSON schema): deeper
ones once passed the parser and failed later, in pickling or in an engine, as a 500."""

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def check_json_body(raw: bytes, param: str | None = None) -> Any:
    """The body's JSON value (``None`` when it is not JSON); a 400 naming ``param`` when it holds a
    string with an unpaired surrogate
    (``\\ud800`` without its pair, as an escape or as bytes: no text) or nests deeper than
    ``MAX_JSON_DEPTH``; or naming the key's path (``body.messages[1].role``) when an object repeats
    a key: Python's parser keeps the last value, where a proxy, WAF or log may read the first. A
    body that is not JSON passes: its route's parser says so.

    The gateway's edge checks every body with it; ``parse_json`` does too. The body is parsed once
    (C's ``json`` scanner, one hook call per object: about 3 µs for a short chat request), and only
    a body with non-ASCII bytes, a surrogate escape or many brackets is walked in Python. A faster
    test for "no key can repeat" does not exist in Python: a regular expression finding the keys
    takes about ten times as long as the parse on a long string.
    """
    keys = _KeyCheck()
    try:
        value = json.loads(raw, object_pairs_hook=keys)
    except RecursionError:
        raise BadRequestError(f"the request body {TOO_DEEP}", param=param) from None
    except json.JSONDecodeError:
        return None  # the route's parser says where
    except ValueError:  # not UTF-8, or an integer past Python's cap: FastAPI would say only "error parsing"
        parse_json(raw, param)  # raises, saying which
        raise
    _check_parsed(raw, value, keys, param)
    return value  # what ``json.loads(raw)`` gives: the hook builds each object as it does


def _check_parsed(raw: bytes, value: Any, keys: _KeyCheck, param: str | None) -> None:
    """What ``check_json_body`` refuses in ``value``, ``raw`` parsed with ``keys`` as its hook."""
    if _needs_a_look(raw):
        _check_value(value, param)
    if keys.repeated:
        raise _repeated_key(value, param)


class _RepeatedKey(dict):  # type: ignore[type-arg]
    """A JSON object that wrote ``key`` more than once (``json.loads`` keeps the last value)."""

    key = ""


class _KeyCheck:
    """An ``object_pairs_hook`` for ``json.loads`` that builds objects as it does, marking each that
    repeats a key as a ``_RepeatedKey``; ``repeated`` says whether one did."""

    repeated = False

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(pairs)
        if len(found) == len(pairs):
            return found
        self.repeated = True
        marked = _RepeatedKey(found)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                marked.key = key
                break
            seen.add(key)
        return marked


def _repeated_key(value: Any, param: str | None) -> BadRequestError:
    """The 400 for the first ``_RepeatedKey`` in ``value``, naming its path under ``param`` (or ``body``)."""
    stack: list[tuple[Any, Any]] = [(value, None)]  # (item, (step, parent's trail)): paths are built once, at the end
    while stack:
        item, trail = stack.pop()
        if isinstance(item, _RepeatedKey):
            steps = [item.key]
            while trail is not None:
                step, trail = trail
                steps.append(step)
            path = param or "body"
            for step in reversed(steps):
                path += f"[{step}]" if isinstance(step, int) else f".{step[:64]}"
            return BadRequestError(f"the request body repeats the key {item.key[:64]!r} in one object ({path}): "
                                   "send each key once (a proxy or log reading the first value would disagree "
                                   "with this server, which would read the last)", param=path)  # fmt: skip
        if isinstance(item, dict):
            stack.extend((child, (key, trail)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, (index, trail)) for index, child in enumerate(item))
    return BadRequestError("the request body repeats a key in one object: send each key once", param=param)


def _needs_a_look(raw: bytes) -> bool:
    # json.loads lets a lone surrogate through, as an escape (\ud800) and as bytes (UTF-8's ED A0 80
    # decodes with "surrogatepass"); and a body with few brackets cannot nest deeply.
    return (not raw.isascii() or _SURROGATE_ESCAPE.search(raw) is not None
            or raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH)  # fmt: skip


def _check_value(value: Any, param: str | None) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise BadRequestError(f"the request body nests lists and objects more than {MAX_JSON_DEPTH} levels "
                                      "deep; write a flatter document", param=param)  # fmt: skip
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                raise BadRequestError("the request body is not valid JSON: a string holds an unpaired surrogate "
                                      "(\\ud800-\\udfff without its pair); send text as UTF-8", param=param) from None


def require_json_media(content_type: str) -> None:
    """415 naming the header unless a request's Content-Type (``""``: none sent) declares JSON
    (``application/json``, ``application/*+json``)."""
    media = content_type.split(";")[0].strip().lower()
    if not (media == "application/json" or (media.startswith("application/") and media.endswith("+json"))):
        raise UnsupportedMediaTypeError.not_json(content_type)


def json_body(model: type[M], raw: bytes, prefix: str = "", *, content_type: str | None = None) -> M:
    """A request body (``raw`` bytes, empty meaning ``{}``) as a ``model``: 400 when it is not a
    JSON object (``parse_json``), else ``validate_json`` (422 naming the field).

    ``content_type`` (the request's header, ``""`` when it sent none) is checked when given: a body
    declared as anything but JSON is a 415 naming the header, as on the OpenAI routes (``curl -d``
    sends ``application/x-www-form-urlencoded``; a browser's form, ``text/plain``)."""
    if content_type is not None and raw.strip():
        require_json_media(content_type)
    data = parse_json(raw, prefix or None) if raw.strip() else {}
    if not isinstance(data, dict):
        raise BadRequestError("the request body must be a JSON object ({...})", param=prefix or None)
    return validate_json(model, data, prefix)
