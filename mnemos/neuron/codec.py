"""How job calls and results travel between clients, CORTEX and NEURON workers.

It lives in NEURON, the lower of the two (CORTEX dispatches to NEURON's pools), so both import it.

A call is either a ``module:function`` reference with JSON arguments or a cloudpickled
``(function, args, kwargs)`` payload from Python. CORTEX sends a worker each attempt as an
``Invocation``; the worker answers an ``Outcome``. Results and logs travel in an *envelope*::

    {"encoding": "json", "value": <JSON>, "bytes": n}             small, JSON round-trips exactly
    {"encoding": "pickle", "inline": "<base64>", "bytes": n}      small, any Python object
    {"encoding": "json"|"pickle"|"text", "digest": "sha256:…", "bytes": n}   large: an ENGRAM blob

Envelopes are what the journal stores, so a result is never larger than ``inline_limit`` in it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mnemos.engram import Engram
from mnemos.errors import ValidationError

__all__ = [
    "REFERENCE",
    "Envelope",
    "Invocation",
    "Outcome",
    "decode_text",
    "decode_value",
    "describe_callable",
    "encode_text",
    "encode_value",
    "envelope_digest",
    "load_call",
    "pickle_call",
    "resolve_reference",
    "validate_reference",
]

Envelope = dict[str, Any]


@dataclass(slots=True)
class Invocation:
    """One attempt of a job, as CORTEX sends it to a NEURON worker (``Worker.start``)."""

    id: str
    attempt: int
    function: str  # a module:function reference, or the display name of a pickled call
    owner: str | None = None  # who submitted it: its log lines on the event stream name them
    payload: str | None = None  # base64 cloudpickle of (fn | None, args, kwargs)
    payload_digest: str | None = None  # the ENGRAM blob of a payload too large to inline
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    trace: dict[str, str] = field(default_factory=dict)  # W3C trace context of the dispatch


@dataclass(slots=True)
class Outcome:
    """What one attempt came to, as its worker (or CORTEX, for a lost or timed-out one) reports it."""

    id: str
    attempt: int
    ok: bool
    worker: str | None = None
    pool: str | None = None
    result: Envelope | None = None
    error: str | None = None
    traceback: str | None = None
    fatal: bool = False  # retrying cannot help (the function cannot be found)
    unstarted: bool = False  # given back before it started (it waited too long for a thread)
    started: float | None = None
    finished: float | None = None
    logs: Envelope | None = None


REFERENCE = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)


def validate_reference(ref: str, *, param: str = "function") -> str:
    """Check the shape of ``module:function`` (no import); return it."""
    if not isinstance(ref, str) or not REFERENCE.fullmatch(ref):
        raise ValidationError(
            f"{param}: {ref!r} is not a function reference: use 'package.module:function'", param=param
        )
    return ref


@functools.lru_cache(maxsize=1024)
def resolve_reference(ref: str, *, param: str = "function") -> Callable[..., Any]:
    """Import ``module:function`` (attributes may be dotted: ``module:Class.method``)."""
    validate_reference(ref, param=param)
    module_name, _, attr_path = ref.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValidationError(f"{param}: cannot import module {module_name!r} ({exc})", param=param) from None
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise ValidationError(
                f"{param}: module {module_name!r} has no attribute {attr_path!r}", param=param
            ) from None
    if not callable(target):
        raise ValidationError(f"{param}: {ref} is not callable", param=param)
    return target  # type: ignore[no-any-return]


def describe_callable(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a callable, for display and lineage."""
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return f"{module}:{name}"


def pickle_call(fn: Callable[..., Any] | None, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any],
                name: str = "the call") -> bytes:  # fmt: skip
    """The cloudpickled ``(fn, args, kwargs)`` a Python client sends (``fn`` None for a reference).

    Raises:
        ValidationError: ``fn`` or an argument cannot be pickled (a lock, a socket, a generator),
            naming ``fn`` (``name``: how the message shows the call) and cloudpickle's reason.
    """
    from ray import cloudpickle

    try:
        return cloudpickle.dumps((fn, tuple(args), dict(kwargs)))  # type: ignore[no-any-return]
    except Exception as exc:  # noqa: BLE001 - cloudpickle's own error, whatever its type
        raise ValidationError(
            f"fn: {name} or its arguments cannot be pickled ({type(exc).__name__}: {exc}): a job's call goes to its "
            "worker with cloudpickle; pass what it needs as arguments that pickle, or call a registered Function",
            param="fn") from None  # fmt: skip


def load_call(invocation: Invocation, engram: Engram) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """The function and arguments of a job invocation (run on the worker)."""
    fn: Any = None
    raw: bytes | None = None
    if invocation.payload is not None:
        raw = base64.b64decode(invocation.payload)
    elif invocation.payload_digest is not None:
        raw = engram.get(invocation.payload_digest)
    if raw is not None:
        from ray import cloudpickle

        fn, args, kwargs = cloudpickle.loads(raw)
    else:
        args, kwargs = tuple(invocation.args), dict(invocation.kwargs)
    if fn is None:
        fn = resolve_reference(invocation.function)
    return fn, tuple(args), dict(kwargs)


def _json_exact(value: Any) -> bytes | None:
    """JSON bytes of ``value`` when it reads back equal (tuples, int keys, sets … do not)."""
    if value is None or type(value) in (bool, int, str):
        return json.dumps(value).encode()
    try:
        data = json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        return None
    try:
        same = json.loads(data) == value
    except Exception:  # noqa: BLE001 - an exotic __eq__
        return None
    return data if same and _plain(value) else None


def _plain(value: Any) -> bool:
    """Only builtin JSON types all the way down (a subclass of dict or str would lose its type)."""
    kind = type(value)
    if kind in (type(None), bool, int, float, str):
        return True
    if kind is list:
        return all(_plain(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return False


def encode_value(value: Any, engram: Engram, inline_limit: int) -> Envelope:
    """The envelope of a job result; over ``inline_limit`` bytes it is written to ENGRAM.

    Raises:
        ValidationError: the value is neither JSON nor picklable (the same call would return another).
    """
    data = _json_exact(value)
    encoding = "json"
    if data is None:
        from ray import cloudpickle

        try:
            data, encoding = cloudpickle.dumps(value), "pickle"
        except Exception as exc:  # noqa: BLE001 - pickling raises TypeError, PicklingError, AttributeError…
            raise ValidationError(
                f"result: a {type(value).__name__} cannot be pickled ({type(exc).__name__}: {exc}); "
                "return JSON values or objects that pickle", param="result") from None  # fmt: skip
    size = len(data)
    if size > inline_limit:
        return {"encoding": encoding, "digest": engram.put(data), "bytes": size}
    if encoding == "json":
        return {"encoding": "json", "value": value, "bytes": size}
    return {"encoding": "pickle", "inline": base64.b64encode(data).decode(), "bytes": size}


def decode_value(envelope: Envelope | None, engram: Engram) -> Any:
    """The Python value of a result envelope (``None`` for no envelope)."""
    if not envelope:
        return None
    if "digest" in envelope:
        data = engram.get(envelope["digest"])
    elif envelope["encoding"] == "json":
        return envelope.get("value")
    else:
        data = base64.b64decode(envelope["inline"])
    if envelope["encoding"] == "json":
        return json.loads(data)
    from ray import cloudpickle

    return cloudpickle.loads(data)


def envelope_digest(envelope: Envelope) -> str:
    """The sha256 of an envelope's bytes: the blob digest, or computed for inline values."""
    if "digest" in envelope:
        return str(envelope["digest"])
    if envelope["encoding"] == "json":
        data = json.dumps(envelope.get("value"), separators=(",", ":")).encode()
    else:
        data = base64.b64decode(envelope["inline"])
    return "sha256:" + hashlib.sha256(data).hexdigest()


def encode_text(text: str, engram: Engram, inline_limit: int) -> Envelope | None:
    """Captured output as an envelope (``None`` when empty)."""
    if not text:
        return None
    data = text.encode("utf-8", "replace")
    if len(data) > inline_limit:
        return {"encoding": "text", "digest": engram.put(data), "bytes": len(data)}
    return {"encoding": "text", "value": text, "bytes": len(data)}


def decode_text(envelope: Envelope | None, engram: Engram) -> str:
    """The text of a logs envelope."""
    if not envelope:
        return ""
    if "digest" in envelope:
        return engram.get(envelope["digest"]).decode("utf-8", "replace")
    return str(envelope.get("value", ""))
