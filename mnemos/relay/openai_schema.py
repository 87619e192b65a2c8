"""Pydantic models of the OpenAI API that RELAY serves.

Requests are validated strictly where a value would be wrong (``max_tokens: -1``,
``temperature: 9``), and numbers and booleans are JSON's own, as OpenAI checks them: ``"5"``,
``true`` or ``5.5`` is not an integer, ``"0.5"`` not a number, ``"yes"`` not a boolean (an integer
is a number; ``5.0`` is an integer, as JSON Schema and the published schema say). Clients differ
elsewhere: fields RELAY does not use (``user`` …) are accepted and ignored, as vLLM and Ray Serve
LLM do, except vLLM's sampling fields (``VLLM_SAMPLING_EXTRAS``: ``logit_bias``, ``top_k`` …), which
reach vLLM models as sent. A request that fails validation is answered 422 in OpenAI's error shape,
naming the field in ``param`` as the client's JSON path (``messages[0].role``).

Engine features (``n > 1``, ``logprobs``, ``tools``, ``response_format`` …) are accepted here and
served by vLLM for ``engine: vllm`` models, which get the client's request as vLLM parses it.
Runtimes that cannot do one refuse it: ``engine_features()`` lists the ones a request asks for.

Response models exist for ``/openapi.json``; the gateway writes responses as plain JSON.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mnemos._model import is_integral

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "Completion",
    "CompletionRequest",
    "CreateEmbeddingResponse",
    "EmbeddingRequest",
    "ErrorBody",
    "ErrorResponse",
    "FunctionCall",
    "ModelCard",
    "ModelList",
    "StreamOptions",
    "ToolCall",
    "Usage",
    "VLLM_SAMPLING_EXTRAS",
    "event_stream_doc",
    "unread_extras",
]

log = logging.getLogger("mnemos.relay")

_MAX_STOP = 4
_MAX_N = 16


def _integral(cls: type[BaseModel], value: Any) -> Any:
    """``2.0`` as the integer ``2``: JSON Schema's integer (the published schema's) is any number
    without a fraction. Otherwise integers are strict: not ``"5"``, ``true`` or ``5.5``."""
    return int(value) if is_integral(value) else value


def _integers(*names: str) -> Any:
    """The validator that reads ``2.0`` as ``2`` for the integer fields ``names`` (``strict=True``)."""
    return field_validator(*names, mode="before")(_integral)


def _null_is_default(*names: str) -> Any:
    """The validator that reads ``null`` as the field's default for ``names``: OpenAI's API takes
    ``"n": null``, ``"stream": null`` … (nullable in its spec), and clients send them."""

    def default(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
        return cls.model_fields[str(info.field_name)].default if value is None else value

    return field_validator(*names, mode="before")(default)


def _nullable(schema: dict[str, Any]) -> None:
    """A field's published schema with ``null`` accepted too (``_null_is_default``)."""
    inner = {key: schema.pop(key) for key in list(schema) if key not in ("default", "description", "title")}
    schema["anyOf"] = [inner, {"type": "null"}]


def _token_ids(value: Any) -> bool:
    """Whether ``value`` is token ids: an integer, or a non-empty list of integers."""
    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    return integer(value) or (isinstance(value, list) and bool(value) and all(integer(v) for v in value))


def _no_token_ids(fix: str) -> Any:
    """A ``before`` validator refusing token ids where OpenAI also takes them (``prompt``, ``input``;
    a documented limit): the message says so and names ``fix``, where the union's own errors
    ("expected a string, but got an array") named neither."""

    def refuse(cls: type[BaseModel], value: Any) -> Any:
        if _token_ids(value) or (isinstance(value, list) and any(_token_ids(v) for v in value)):
            raise ValueError(f"token ids are not accepted here: {fix}")
        return value

    return refuse


def _strings(min_items: int, max_items: int, min_length: int = 0) -> Any:
    """A ``list[str]`` whose published schema states the bounds its validator checks (with its own message)."""
    items = {"type": "string", "minLength": min_length} if min_length else {"type": "string"}
    schema = {"type": "array", "items": items, "minItems": min_items, "maxItems": max_items}
    return Annotated[list[str], WithJsonSchema(schema)]


class _Request(BaseModel):
    """Base of request bodies: unknown fields are ignored (clients send extras RELAY does not use);
    ``NaN`` and ``Infinity`` are not numbers here (JSON has neither)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# Fields whose presence needs an engine feature (checked by ``engine_features``; ``n`` separately).
_RESPONSE_FORMATS = ("text", "json_object", "json_schema")
_SEED = {"type": "integer", "minimum": -(2**63 - 1024), "maximum": 2**63 - 1024}
"""``seed`` as published: within ±(2**63 - 1024), the largest float64 under 2**63 (JSON Schema tools
read the ends of 64 bits as floats, and wrote ``9.223372036854776e18`` as a seed past them)."""
_RESPONSE_FORMAT = {"type": "object", "required": ["type"], "properties": {"type": {"enum": list(_RESPONSE_FORMATS)},
                    "json_schema": {"type": "object"}}}  # fmt: skip
_ENGINE_FIELDS = ("tools", "tool_choice", "response_format", "logprobs", "top_logprobs")
# Values of those fields that ask for nothing beyond the default (SDKs such as LangChain send them).
_NO_OP: dict[str, tuple[Any, ...]] = {"response_format": ({"type": "text"},), "tool_choice": ("none",),
                                      "top_logprobs": (0,)}  # fmt: skip
# OpenAI's sampling fields that only vLLM applies (the other runtimes sample with temperature, top_p,
# seed and stop), with the values that ask for nothing: another value is refused there, never ignored.
# (vLLM's own extras, ``top_k`` …, are not OpenAI's: other runtimes ignore them, as any unknown field.)
_SAMPLING_NO_OP: dict[str, tuple[Any, ...]] = {"presence_penalty": (0,), "frequency_penalty": (0,),
                                               "logit_bias": ({},), "suffix": ("",)}  # fmt: skip


class ContentPart(_Request):
    """One part of a multi-part message; only ``text`` parts are supported."""

    type: Literal["text"] = Field(description="Only text parts are supported.")
    text: str


class FunctionCall(_Request):
    """The function an earlier tool call named, and its arguments."""

    name: str
    arguments: str = Field(description="The arguments, as JSON text.")


class ToolCall(_Request):
    """One tool call of an earlier assistant message: ``function`` (or ``custom``, vLLM models)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)  # reaches vLLM as sent

    id: str
    type: Literal["function", "custom"]
    function: FunctionCall | None = Field(None, description="With type function.")
    custom: dict[str, Any] | None = Field(None, description="With type custom (vLLM checks it).")


_NOT_NULL = {"not": {"type": "null"}}
_MESSAGE_RULES = {"allOf": [  # the published form of ``ChatMessage._content_where_the_role_needs_it``
    {"if": {"properties": {"role": {"enum": ["system", "developer", "user"]}}, "required": ["role"]},
     "then": {"required": ["content"], "properties": {"content": _NOT_NULL}}},
    {"if": {"properties": {"role": {"const": "tool"}}, "required": ["role"]},
     "then": {"required": ["content", "tool_call_id"],
              "properties": {"content": _NOT_NULL, "tool_call_id": {"type": "string", "minLength": 1}}}},
    {"if": {"properties": {"role": {"const": "assistant"}}, "required": ["role"]},
     "then": {"anyOf": [{"required": ["content"], "properties": {"content": _NOT_NULL}},
                        {"required": ["tool_calls"], "properties": {"tool_calls": {"type": "array", "minItems": 1}}}]}},
]}  # fmt: skip


class ChatMessage(_Request):
    """One chat message."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, json_schema_extra=_MESSAGE_RULES)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="An assistant's earlier tool calls.")
    tool_call_id: str | None = Field(None, description="The call a tool message answers.")

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, value: Any) -> Any:
        """A part that is not text (an image, audio) named as such, not as a wrong type."""
        for i, part in enumerate(value if isinstance(value, list) else ()):
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and kind != "text":
                raise ValueError(f"part {i} is of type {kind[:40]!r}: the models served here take text parts only")
        return value

    @model_validator(mode="after")
    def _content_where_the_role_needs_it(self) -> ChatMessage:
        """OpenAI's rules: content for every role but an assistant's message of tool calls; a tool
        message names the call it answers."""
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs content" + (
                "" if self.role != "assistant" else " (or tool_calls)"))  # fmt: skip
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id: the id of the tool call it answers")
        return self

    def text(self) -> str:
        """The message's text (parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Request):
    include_usage: bool = Field(False, strict=True, description="Send a last chunk with token usage.",
                                json_schema_extra=_nullable)  # fmt: skip

    _defaults = _null_is_default("include_usage")


def _stop_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


VLLM_SAMPLING_EXTRAS = frozenset({
    "logit_bias", "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos", "prompt_logprobs",
    "stop_token_ids", "bad_words", "allowed_token_ids", "include_stop_str_in_output", "skip_special_tokens",
    "spaces_between_special_tokens", "structured_outputs", "truncate_prompt_tokens",
})  # fmt: skip
"""Fields of vLLM's own request a chat or completion may add for a vLLM model: an allowlist of
sampling controls (not ``chat_template``, ``logits_processors``, ``kv_transfer_params`` …, which
name code, templates or engine state). Other runtimes ignore them, as any unknown field."""


def unread_extras(body: Any) -> set[str]:
    """The fields a client added that no engine reads (outside ``VLLM_SAMPLING_EXTRAS``): they are
    dropped before a request reaches vLLM and left out of its response-cache key."""
    return set(getattr(body, "model_extra", None) or ()) - VLLM_SAMPLING_EXTRAS


_LEFT = object()
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TOOL = {"type": "object", "properties": {"function": {"type": "object", "properties": {
    "name": {"type": "string", "pattern": f"^{_TOOL_NAME.pattern}$"}}}}}  # fmt: skip


def looping_ref(schema: Any) -> str | None:
    """The ``$ref`` of a JSON schema that leads back to where it stands through ``$ref`` and
    ``allOf`` alone (``{"$ref": "#"}``, ``{"allOf": [{"$ref": "#"}]}``, ``a → b → a`` in
    ``$defs``), else None. Such a schema matches no JSON value, and vLLM's structured output then
    fails the request (a 500). Recursion through ``properties``, ``items`` or an ``anyOf`` with
    another branch (a tree) is fine. Only local refs (``#…``) are followed."""
    if not isinstance(schema, dict):
        return None

    def target(ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node: Any = schema
        for part in ref[2:].split("/") if len(ref) > 1 else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def edges(node: dict[str, Any]) -> list[tuple[str, Any]]:
        """What ``node`` must also be, with nothing in between: its ``$ref``'s target, its ``allOf``."""
        out = [(str(node["$ref"]), target(node["$ref"]))] if "$ref" in node else []
        parts = node.get("allOf")
        return out + [("allOf", part) for part in parts] if isinstance(parts, list) else out

    done: set[int] = set()
    for start in _objects(schema):
        path: list[int] = []
        on_path: set[int] = set()
        stack: list[tuple[Any, Any]] = [(start, None)]
        while stack:  # depth first along the edges; a node met again on the path closes a loop
            node, ref = stack.pop()
            if node is _LEFT:  # the end of a node's edges: it leaves the path
                done.add(path[-1])
                on_path.discard(path.pop())
                continue
            if not isinstance(node, dict) or id(node) in done:
                continue
            if id(node) in on_path:
                return ref or "allOf"
            path.append(id(node))
            on_path.add(id(node))
            stack.append((_LEFT, None))
            stack.extend((child, label if label.startswith("#") else ref) for label, child in edges(node))
    return None


def _objects(value: Any) -> list[dict[str, Any]]:
    """Every object inside a JSON value (itself included), outermost first."""
    found, todo = [], [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            found.append(item)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return found


_META_MAX_OBJECTS = 256
_META_MAX_DEPTH = 32


def _schema_error(message: str) -> PydanticCustomError:
    """A schema no engine can use: answered 400 (``invalid_schema``), as vLLM and OpenAI answer one,
    not 422 as a field of the wrong type."""
    return PydanticCustomError("invalid_schema", "{message}", {"message": message})


def _size(value: Any) -> tuple[int, int]:
    """How many objects a JSON value holds and how deep it nests (a flat object: 1, 1)."""
    objects = depth = 0
    todo = [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            objects += 1
            depth = max(depth, level)
            todo.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            depth = max(depth, level)
            todo.extend((child, level + 1) for child in item)
    return objects, depth


@functools.lru_cache(maxsize=128)
def _meta_error(text: str) -> tuple[str, str] | None:
    """Where and why the JSON Schema ``text`` breaks the metaschema, or None.

    The metaschema is draft 7's, or draft 3's, 4's or 6's where ``$schema`` names one: a schema
    valid under 2019-09 or 2020-12 is valid under draft 7's metaschema too (the newer keywords are
    extra keywords there), and checking against it costs a fifth of 2020-12's ``$dynamicRef``s.
    Formats are not checked: ``pattern`` is an ECMA regex that Python's ``re`` may not read.
    Cached: agents send the same tools with every request."""
    import warnings

    from jsonschema.exceptions import best_match
    from jsonschema.validators import Draft3Validator, Draft4Validator, Draft6Validator, Draft7Validator, validator_for

    schema = json.loads(text)
    named: Any = Draft7Validator
    if isinstance(schema.get("$schema"), str):  # another value is draft 7's to refuse (validator_for fails on it)
        with warnings.catch_warnings():  # an unknown $schema: no warning, draft 7's metaschema below
            warnings.simplefilter("ignore", DeprecationWarning)
            named = validator_for(schema, default=Draft7Validator)
    validator = named if named in (Draft3Validator, Draft4Validator, Draft6Validator) else Draft7Validator
    try:
        error = best_match(validator(validator.META_SCHEMA).iter_errors(schema))
    except Exception:  # noqa: BLE001 - a schema the checker cannot read is vLLM's to judge, never a 500
        log.debug("metaschema check failed", exc_info=True)
        return None
    if error is None:
        return None
    message = error.message if len(error.message) <= 200 else error.message[:200] + " …"
    return error.json_path[1:], message


def _check_meta(schema: Any, where: str) -> None:
    """Refuse a schema that is not a JSON Schema (``{"type": "wat"}``, ``"required": "x"``), as
    OpenAI does, naming where it breaks. Schemas past ``_META_MAX_OBJECTS`` objects or
    ``_META_MAX_DEPTH`` levels are left to vLLM: the check costs the gateway's event loop about
    40 µs an object (10 ms at the cap), and a 1 MiB body's worth would hold it for a second."""
    if not isinstance(schema, dict):
        return
    objects, depth = _size(schema)
    if objects > _META_MAX_OBJECTS or depth > _META_MAX_DEPTH:
        return
    if (found := _meta_error(json.dumps(schema, sort_keys=True))) is not None:
        raise _schema_error(f"{where}{found[0]}: {found[1]} (this schema is not a valid JSON Schema)")


def _check_schema(schema: Any, where: str) -> None:
    _check_meta(schema, where)
    if (ref := looping_ref(schema)) is not None:
        raise _schema_error(f"{where}: {ref!r} leads back to where it stands with nothing in between, so the "
                            "schema matches no JSON value: give the recursion a base case (put it under properties "
                            "or items, or in an anyOf beside another branch)")  # fmt: skip


def _same(value: Any, neutral: tuple[Any, ...]) -> bool:
    """Whether ``value`` is one of ``neutral``, JSON's way: ``1`` is ``1.0``, ``false`` is no number."""
    return any(value == n and isinstance(value, bool) == isinstance(n, bool) for n in neutral)


class _Sampling(_Request):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)  # extras: VLLM_SAMPLING_EXTRAS reach vLLM

    model: str = Field(min_length=1, description="A served model's name (see GET /v1/models).")
    temperature: float | None = Field(None, ge=0.0, le=2.0, strict=True)
    top_p: float | None = Field(None, gt=0.0, le=1.0, strict=True)
    n: int = Field(1, ge=1, le=_MAX_N, strict=True, description="Choices to generate (more than 1: vLLM models only).",
                   json_schema_extra=_nullable)  # fmt: skip
    stream: bool = Field(False, strict=True, json_schema_extra=_nullable)
    stream_options: StreamOptions | None = None
    stop: str | _strings(0, _MAX_STOP) | None = Field(None, description=f"Up to {_MAX_STOP} stop sequences.")
    # 64 bits, as OpenAI and vLLM take it: a larger one failed in the runtime (torch: overflow), a 500
    seed: Annotated[int, WithJsonSchema(_SEED)] | None = Field(
        None, ge=-(2**63), le=2**63 - 1, strict=True, description="A 64-bit integer, as OpenAI and vLLM take it.")
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0, strict=True, description="Not 0: vLLM models.")
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0, strict=True, description="Not 0: vLLM models.")
    user: str | None = None
    structured_outputs: dict[str, Any] | None = Field(
        None, description="vLLM models: one constraint (json, regex, choice, grammar …), as vLLM takes it."
    )  # typed here: vLLM's own request model fails (a 500) on one that is not an object

    _sampling_integers = _integers("n", "seed")
    _sampling_defaults = _null_is_default("n", "stream")

    @field_validator("structured_outputs")
    @classmethod
    def _check_structured(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _check_schema(value.get("json"), "json")
        return value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > _MAX_STOP:
            raise ValueError(f"at most {_MAX_STOP} stop sequences")
        return value

    def stop_list(self) -> list[str]:
        return _stop_list(self.stop)

    def engine_features(self) -> list[str]:
        """The fields set in this request that only an engine like vLLM serves (``n`` above 1 …), and
        OpenAI's sampling fields only vLLM applies (``presence_penalty``, ``frequency_penalty``,
        ``logit_bias``, a completion's ``suffix``) when they ask for something."""
        asked = [name for name in _ENGINE_FIELDS
                 if (value := getattr(self, name, None)) not in (None, False) and value not in _NO_OP.get(name, ())]
        fields, extra = type(self).model_fields, self.model_extra or {}
        sampling = [name for name, neutral in _SAMPLING_NO_OP.items()
                    if (value := getattr(self, name) if name in fields else  # logit_bias: one of vLLM's extras
                        extra.get(name) if name in VLLM_SAMPLING_EXTRAS else None) is not None
                    and not _same(value, neutral)]  # fmt: skip
        return (["n"] if self.n > 1 else []) + asked + sampling

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


_TOP_LOGPROBS_RULE = {  # the published form of ``ChatCompletionRequest._top_logprobs_with_logprobs``
    "if": {"properties": {"top_logprobs": {"type": "integer", "minimum": 1}}, "required": ["top_logprobs"]},
    "then": {"properties": {"logprobs": {"const": True}}, "required": ["logprobs"]},
}


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, json_schema_extra=_TOP_LOGPROBS_RULE)

    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[Annotated[dict[str, Any], WithJsonSchema(_TOOL)]] | None = Field(
        None, description="Function tools (vLLM models).")  # fmt: skip
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = Field(
        None, description="none, auto, required or a named function.")  # fmt: skip
    parallel_tool_calls: bool | None = Field(None, strict=True, description="Accepted with tools (vLLM models).")
    response_format: Annotated[dict[str, Any], WithJsonSchema(_RESPONSE_FORMAT)] | None = Field(
        None, description="json_object or json_schema (vLLM models).")  # fmt: skip
    logprobs: bool | None = Field(None, strict=True,
                                  description="Log probabilities of the output tokens (vLLM models).")  # fmt: skip
    top_logprobs: int | None = Field(None, ge=0, le=20, strict=True,
                                     description="Most likely tokens per position (with logprobs).")  # fmt: skip
    max_tokens: int | None = Field(None, ge=1, strict=True,
                                   description="Most tokens to generate (default: the model's limit).")  # fmt: skip
    max_completion_tokens: int | None = Field(None, ge=1, strict=True, description="Newer name of max_tokens.")

    _chat_integers = _integers("top_logprobs", "max_tokens", "max_completion_tokens")

    @field_validator("tools")
    @classmethod
    def _check_tools(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        """Function names as OpenAI takes them (``^[a-zA-Z0-9_-]{1,64}$``), each once, and parameters
        that are a JSON Schema; the rest of a tool is vLLM's to check."""
        seen: set[str] = set()
        for i, tool in enumerate(value or ()):
            function = tool.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            if not isinstance(name, str):
                continue
            if not _TOOL_NAME.fullmatch(name):
                raise ValueError(f"[{i}].function.name {name[:80]!r}: use letters, digits, '_' and '-' (at most 64)")
            if name in seen:
                raise ValueError(f"[{i}].function.name {name!r}: another tool has this name; give each its own")
            seen.add(name)
            parameters = function.get("parameters")
            if parameters is not None and not isinstance(parameters, dict):
                sent = type(parameters).__name__
                raise ValueError(f'[{i}].function.parameters: a JSON Schema ({{"type": "object", …}}), not {sent}')
            _check_meta(parameters, f"[{i}].function.parameters")
        return value


    @field_validator("response_format")
    @classmethod
    def _check_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """A ``type`` OpenAI and vLLM know (``xml`` went to the model, which answered as it liked), and
        for ``json_schema`` its ``json_schema`` object, whose schema must be one a value can match."""
        if value is None:
            return value
        kind = value.get("type")
        if kind not in _RESPONSE_FORMATS:
            shown = repr(kind)[:60] if kind is not None else "missing"
            raise ValueError(f"type {shown}: use one of {', '.join(_RESPONSE_FORMATS)}")
        spec = value.get("json_schema")
        if kind == "json_schema" and not isinstance(spec, dict):
            raise ValueError('json_schema: type json_schema needs {"json_schema": {"name": …, "schema": {…}}}')
        if isinstance(spec, dict):
            _check_schema(spec.get("schema"), "json_schema.schema")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_with_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        """``top_logprobs`` asks for the most likely tokens beside each token's logprob: without
        ``logprobs: true`` there are none, and OpenAI and vLLM refuse it (400 there)."""
        if value and not info.data.get("logprobs"):
            raise ValueError("needs logprobs: true beside it (or leave top_logprobs out)")
        return value

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: str | _strings(1, 1) = Field(description="A prompt, or a list of one prompt.")
    max_tokens: int | None = Field(16, ge=1, strict=True)
    echo: bool = Field(False, strict=True, description="Prepend the prompt to the completion.",
                       json_schema_extra=_nullable)  # fmt: skip
    suffix: str | None = Field(None, description="Text after the completion: models that fill in the middle (vLLM).")
    logprobs: int | None = Field(None, ge=0, le=20, strict=True,
                                 description="Log probabilities of the top tokens (vLLM models).")  # fmt: skip
    best_of: int | None = Field(None, ge=1, strict=True, json_schema_extra={"maximum": 1},
                                description="Only 1: nothing here ranks candidates (ask for n).")  # fmt: skip

    _completion_integers = _integers("max_tokens", "logprobs", "best_of")
    _completion_defaults = _null_is_default("echo")
    _prompt_text = field_validator("prompt", mode="before")(_no_token_ids("send the prompt as text"))

    @field_validator("best_of")
    @classmethod
    def _check_best_of(cls, value: int | None) -> int | None:
        """OpenAI's ``best_of`` (candidates generated server-side, the best one returned) has no
        engine here: vLLM's V1 engine dropped it and ignores it. Above 1 it is refused, not ignored."""
        if value is not None and value > 1:
            raise ValueError("no runtime here generates candidates to rank (vLLM's engine has no best_of): "
                             "ask for n choices and pick one, or leave best_of out")  # fmt: skip
        return value

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("send one prompt per request (a string or a list of one string)")
        return value

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def token_limit(self) -> int | None:
        return self.max_tokens


class EmbeddingRequest(_Request):
    """``POST /v1/embeddings``."""

    model: str = Field(min_length=1)
    input: Annotated[str, WithJsonSchema({"type": "string", "minLength": 1})] | _strings(1, 2048, min_length=1) = Field(
        description="A text or a list of texts, none empty (token arrays are not supported).")  # fmt: skip
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, strict=True, description="Must equal the model's dimension when given.")
    user: str | None = None

    _embedding_integers = _integers("dimensions")
    _input_text = field_validator("input", mode="before")(_no_token_ids(
        "send the texts themselves (LangChain's OpenAIEmbeddings sends token ids unless "
        "check_embedding_ctx_length=False)"))  # fmt: skip

    @field_validator("input")
    @classmethod
    def _check_input(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one text")
        if isinstance(value, list) and len(value) > 2048:
            raise ValueError("at most 2048 texts per request")
        if "" in ([value] if isinstance(value, str) else value):
            raise ValueError("an empty text has no embedding: send at least one character per text")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


# -- responses (documentation) ----------------------------------------------------------------
class Usage(_Response):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class _ChatChoiceMessage(_Response):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None


class _Choice(_Response):
    index: int
    finish_reason: Literal["stop", "length", "tool_calls"] | None
    logprobs: dict[str, Any] | None = None


class _Generated(_Response):
    """What every generation response carries besides its choices."""

    id: str
    created: int
    model: str


class _ChatChoice(_Choice):
    message: _ChatChoiceMessage


class ChatCompletion(_Generated):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[_ChatChoice]
    usage: Usage


class _Delta(_Response):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _ChunkChoice(_Choice):
    delta: _Delta


class ChatCompletionChunk(_Generated):
    """One ``data:`` event of a streamed chat completion (``text/event-stream``)."""

    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[_ChunkChoice]
    usage: Usage | None = None


class _CompletionChoice(_Choice):
    text: str


class Completion(_Generated):
    object: Literal["text_completion"] = "text_completion"
    choices: list[_CompletionChoice]
    usage: Usage | None = None


class _Embedding(_Response):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32.")


class CreateEmbeddingResponse(_Response):
    object: Literal["list"] = "list"
    data: list[_Embedding]
    model: str
    usage: Usage


class ModelCard(_Response):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    mnemos: dict[str, Any] | None = Field(None, description="Engine, generation, digest or adapter of the model.")


class ModelList(_Response):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(_Response):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(_Response):
    """OpenAI's error shape, used for every 4xx and 5xx on ``/v1``."""

    error: ErrorBody


def event_stream_doc(chunk: type[BaseModel]) -> dict[str, Any]:
    """The ``text/event-stream`` content of a ``stream: true`` answer, for ``/openapi.json``: one
    event, as OpenAPI documents an event stream before 3.2's ``itemSchema``. Its ``data`` is a
    ``chunk`` (JSON), an ``ErrorResponse`` when the engine fails mid-stream, or the closing
    ``[DONE]``; both models are in ``components.schemas``."""
    refs = [{"$ref": f"#/components/schemas/{model.__name__}"} for model in (chunk, ErrorResponse)]
    data = {"type": "string", "anyOf": [{"const": "[DONE]"}, {"contentMediaType": "application/json",
                                                               "contentSchema": {"anyOf": refs}}],
            "description": f"A {chunk.__name__} (JSON), an ErrorResponse if the answer fails midway, then [DONE]."}
    schema = {"type": "object", "required": ["data"], "properties": {"data": data}}
    return {"text/event-stream": {"schema": schema}}
