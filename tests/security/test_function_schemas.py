"""A Function's parameter schema is checked against callers' kwargs inside the gateway: it may not
make the gateway fetch a URL or read a file (``$ref`` outside the schema), at apply or at a call."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from mnemos.errors import ValidationError
from mnemos.genome import parse_resource
from mnemos.genome.function import check_arguments


def _function(parameters: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "genome.mnemos.dev/v1", "kind": "Function", "metadata": {"name": "k7"},
            "spec": {"entrypoint": "json:dumps", "parameters": parameters}}  # fmt: skip


@pytest.mark.parametrize("target", ["http://127.0.0.1:9/s.json", "file:///etc/hostname", "other.json#/x",
                                    "//example.com/s"])  # fmt: skip
@pytest.mark.parametrize("keyword", ["$ref", "$dynamicRef"])
def test_apply_refuses_a_reference_outside_the_schema(keyword: str, target: str) -> None:
    deep = {"type": "object", "properties": {"a": {"type": "array", "items": [{keyword: target}][0]}}}
    with pytest.raises(ValidationError) as refused:
        parse_resource(_function(deep))
    assert refused.value.status == 422 and refused.value.param == "spec.parameters"
    assert refused.value.message.startswith(f"Function: spec.parameters: {keyword} {target!r} points outside")


def test_references_within_the_schema_still_work() -> None:
    function = parse_resource(_function({"type": "object", "$defs": {"n": {"type": "integer"}},
                                         "properties": {"a": {"$ref": "#/$defs/n"}}}))  # fmt: skip
    check_arguments(function, {"a": 3})
    with pytest.raises(ValidationError) as refused:
        check_arguments(function, {"a": "x"})
    assert refused.value.param == "kwargs.a"


def test_a_stored_schema_naming_a_url_is_never_fetched_at_a_call() -> None:
    """A schema stored before references were checked: the call is refused and nothing is fetched."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(2.0)
    port, hits = listener.getsockname()[1], []

    def accept() -> None:
        try:
            conn, _ = listener.accept()
            hits.append(conn.recv(1024))
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    parameters = {"type": "object", "properties": {"c": {"$ref": f"http://127.0.0.1:{port}/s.json"}}}
    valid = parse_resource(_function({"type": "object"}))
    stored = valid.model_copy(update={"spec": valid.spec.model_copy(update={"parameters": parameters})})
    with pytest.raises(ValidationError) as refused:
        check_arguments(stored, {"c": "x"})
    thread.join(3)
    listener.close()
    assert hits == [] and refused.value.status == 422
    assert "never fetched" in refused.value.message and "re-apply" in refused.value.message


# --- patterns: a catastrophic one answers 422 at once, never stalls the gateway's event loop ------------


def _call(parameters: dict[str, Any], kwargs: dict[str, Any]) -> tuple[ValidationError | None, float]:
    function = parse_resource(_function(parameters))
    started = time.perf_counter()
    try:
        check_arguments(function, kwargs)
    except ValidationError as exc:
        return exc, time.perf_counter() - started
    return None, time.perf_counter() - started


def test_the_probes_nested_quantifier_is_a_quick_422() -> None:
    """``(a+)+$`` took ~4 s with ``re`` on 25 a's and a '!', doubling with each further character."""
    parameters = {"type": "object", "properties": {"text": {"type": "string", "pattern": "(a+)+$"}}}
    refused, took = _call(parameters, {"text": "a" * 25 + "!"})
    assert refused is not None and refused.status == 422 and refused.param == "kwargs.text"
    assert took < 1.0


def test_a_pattern_slow_even_for_regex_is_a_422_naming_the_field() -> None:
    parameters = {"type": "object", "properties": {"text": {"type": "string", "pattern": "(a|a)+$"}}}
    refused, took = _call(parameters, {"text": "a" * 24 + "!"})
    assert refused is not None and refused.status == 422 and refused.param == "kwargs.text"
    assert refused.message.startswith("kwargs.text: the pattern of function 'k7' takes too long on this value")
    assert took < 1.0


@pytest.mark.parametrize(
    "parameters",
    [
        {"type": "object", "patternProperties": {"(a|a)+$": {"type": "integer"}}},
        {"type": "object", "properties": {"b": {}}, "patternProperties": {"^c": {}}, "additionalProperties": False},
        {"type": "object", "propertyNames": {"pattern": "(a|a)+$"}},
    ],
    ids=["patternProperties", "additionalProperties", "propertyNames"],
)
def test_a_slow_pattern_on_an_argument_name_is_a_422_naming_it(parameters: dict[str, Any]) -> None:
    if "additionalProperties" in parameters:
        parameters["patternProperties"] = {"(a|a)+$": {}}
    name = "a" * 24 + "!"
    refused, took = _call(parameters, {name: 1})
    assert refused is not None and refused.status == 422 and refused.param == f"kwargs.{name}"
    assert "takes too long on this name" in refused.message and took < 1.0


def test_many_slow_matches_in_one_call_share_one_budget() -> None:
    parameters = {"type": "object", "additionalProperties": {"type": "string", "pattern": "(a|a)+$"}}
    refused, took = _call(parameters, {f"k{i}": "a" * 24 + "!" for i in range(40)})
    assert refused is not None and "takes too long" in refused.message and took < 1.0


def test_ordinary_patterns_match_as_before() -> None:
    parameters = {"type": "object", "properties": {"text": {"type": "string", "pattern": "^[a-z]+$"},
                                                   "code": {"type": "string", "pattern": r"^\d{3}-\d{4}$"}},
                  "patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": False}  # fmt: skip
    assert _call(parameters, {"text": "abc", "code": "555-1234", "x_n": 3})[0] is None
    wrong = [({"text": "ab1"}, "kwargs.text"), ({"text": "abc\nd"}, "kwargs.text"),
             ({"code": "5551234"}, "kwargs.code"), ({"x_n": "3"}, "kwargs.x_n"), ({"y": 1}, "kwargs")]  # fmt: skip
    for kwargs, param in wrong:
        refused, _ = _call(parameters, kwargs)
        assert refused is not None and refused.param == param, kwargs
    refused, _ = _call(parameters, {"y": 1})
    assert refused is not None and "'y' does not match any of the regexes: '^x_'" in refused.message


@pytest.mark.parametrize("where", ["pattern", "patternProperties"])
def test_apply_refuses_a_pattern_that_does_not_compile(where: str) -> None:
    bad = {"type": "string", "pattern": "(a"} if where == "pattern" else {"patternProperties": {"(a": {}}}
    with pytest.raises(ValidationError) as refused:
        parse_resource(_function({"type": "object", "properties": {"t": bad}}))
    assert refused.value.status == 422 and refused.value.param == "spec.parameters"


def test_a_stored_pattern_that_does_not_compile_is_a_422_not_a_500() -> None:
    refused = _stored_call({"type": "object", "properties": {"t": {"type": "string", "pattern": "(a"}}}, {"t": "a"})
    assert refused.status == 422 and refused.param == "function"
    assert "broken" in refused.message and "re-apply" in refused.message


# --- $refs: each names a schema within, none loops; a call never answers 500 ------------------------------


def _stored_call(parameters: dict[str, Any], kwargs: dict[str, Any]) -> ValidationError:
    """Call a Function whose schema was stored before it was checked this well."""
    valid = parse_resource(_function({"type": "object"}))
    stored = valid.model_copy(update={"spec": valid.spec.model_copy(update={"parameters": parameters})})
    with pytest.raises(ValidationError) as refused:
        check_arguments(stored, kwargs)
    return refused.value


def _chain(length: int) -> dict[str, Any]:
    defs: dict[str, Any] = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(length)}
    defs[f"d{length}"] = {"type": "string"}
    return {"type": "object", "$defs": defs, "properties": {"text": {"$ref": "#/$defs/d0"}}}


_LOOP = {"type": "object", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
         "properties": {"text": {"$ref": "#/$defs/a"}}}  # fmt: skip
_BROKEN = {
    "loop": (_LOOP, "loops back on itself"),
    "self through allOf": ({"type": "object", "allOf": [{"$ref": "#"}]}, "loops back on itself"),
    "loop with siblings": (
        {
            "type": "object",
            "$defs": {"a": {"type": "string", "not": {"$ref": "#/$defs/a"}}},
            "properties": {"text": {"$ref": "#/$defs/a"}},
        },
        "loops back on itself",
    ),  # fmt: skip
    "chain of 1500": (_chain(1500), "chain of more than 32 $refs"),
    "dangling": ({"type": "object", "properties": {"text": {"$ref": "#/$defs/nope"}}}, "names nothing"),
    "dangling anchor": ({"type": "object", "properties": {"text": {"$ref": "#nope"}}}, "names nothing"),
    "dangling index": ({"type": "object", "allOf": [{}], "properties": {"t": {"$ref": "#/allOf/1"}}}, "names nothing"),
    "fan-out": (
        {
            "type": "object",
            "$defs": {**{f"l{i}": {"allOf": [{"$ref": f"#/$defs/l{i + 1}"}] * 2} for i in range(20)}, "l20": {}},
            "properties": {"t": {"$ref": "#/$defs/l0"}},
        },
        "more than 10000 schemas",
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(_BROKEN))
def test_apply_refuses_refs_that_dangle_loop_or_chain_too_long(case: str) -> None:
    parameters, why = _BROKEN[case]
    with pytest.raises(ValidationError) as refused:
        parse_resource(_function(parameters))
    assert refused.value.status == 422 and refused.value.param == "spec.parameters"
    assert "$ref '#" in refused.value.message and why in refused.value.message


@pytest.mark.parametrize("case", ["loop", "self through allOf", "chain of 1500", "dangling", "dangling anchor"])
def test_a_stored_broken_schema_is_a_422_for_the_operator_never_a_500(case: str) -> None:
    refused = _stored_call(_BROKEN[case][0], {"text": "x", "t": "x"})
    assert refused.status == 422 and refused.param == "function"
    assert refused.message.startswith("function 'k7': its parameters schema is broken")
    assert "an operator must re-apply the Function" in refused.message


def test_refs_within_the_schema_resolve_as_jsonschema_resolves_them() -> None:
    tree = {"type": "object", "properties": {"v": {"type": "integer"},
                                             "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}  # fmt: skip
    parameters = {
        "type": "object",
        "$defs": {
            "a/b": {"type": "integer"},
            "c~d": {"type": "integer"},
            "e f": {"type": "integer"},
            "anchored": {"$anchor": "num", "type": "integer"},
            "node": tree,
            "inner": {
                "$id": "urn:inner",
                "$defs": {"s": {"type": "string"}},
                "properties": {"x": {"$ref": "#/$defs/s"}},
            },
        },  # fmt: skip
        "properties": {
            "p": {"$ref": "#/$defs/a~1b"},
            "q": {"$ref": "#/$defs/c~0d"},
            "r": {"$ref": "#/$defs/e%20f"},
            "s": {"$ref": "#num"},
            "tree": {"$ref": "#/$defs/node"},
            "i": {"$ref": "urn:inner"},
        },  # fmt: skip
    }
    with pytest.raises(ValidationError):  # 'urn:inner' is outside '#…' and refused, as before
        parse_resource(_function(parameters))
    del parameters["properties"]["i"]
    function = parse_resource(_function(parameters))
    check_arguments(function, {"p": 1, "q": 2, "r": 3, "s": 4, "tree": {"v": 1, "kids": [{"v": 2, "kids": []}]}})
    for name in "pqrs":
        with pytest.raises(ValidationError) as refused:
            check_arguments(function, {name: "x"})
        assert refused.value.param == f"kwargs.{name}"
    with pytest.raises(ValidationError) as refused:
        check_arguments(function, {"tree": {"kids": [{"kids": [{"v": "x"}]}]}})
    assert refused.value.param == "kwargs.tree.kids.0.kids.0.v"
    parse_resource(_function(_chain(31)))  # text -> d0 -> … -> d31 -> d32: 32 $refs, as many as allowed


def test_arguments_nested_too_deep_for_a_recursive_schema_are_a_422_on_kwargs() -> None:
    parameters = {"type": "object", "$defs": {"n": {"type": "object", "properties": {"c": {"$ref": "#/$defs/n"}}}},
                  "properties": {"c": {"$ref": "#/$defs/n"}}}  # fmt: skip
    function = parse_resource(_function(parameters))
    deep: dict[str, Any] = {}
    for _ in range(3000):
        deep = {"c": deep}
    with pytest.raises(ValidationError) as refused:
        check_arguments(function, deep)
    assert refused.value.status == 422 and refused.value.param == "kwargs"


def test_unevaluated_properties_beside_pattern_properties_is_refused_at_apply() -> None:
    """jsonschema matches patternProperties with ``re`` inside unevaluatedProperties, past the timeout."""
    schema = {"type": "object", "unevaluatedProperties": False, "allOf": [{"patternProperties": {"(a|a)+$": {}}}]}
    with pytest.raises(ValidationError) as refused:
        parse_resource(_function(schema))
    assert refused.value.param == "spec.parameters" and "unevaluatedProperties" in refused.value.message
    parse_resource(_function({"type": "object", "unevaluatedProperties": False, "properties": {"a": {}}}))


def test_a_huge_value_is_cut_so_that_the_reason_shows() -> None:
    """A 600 KB string over a parameter's ``maxLength``: the message began with the value and was
    cut at 300 characters, so "is too long" never reached the caller."""
    function = parse_resource(_function({"type": "object", "properties": {"text": {"type": "string",
                                                                                     "maxLength": 10}}}))  # fmt: skip
    with pytest.raises(ValidationError) as refused:
        check_arguments(function, {"text": "a " * 300_000})
    assert refused.value.param == "kwargs.text" and len(refused.value.message) < 300, refused.value.message
    assert "… (600002 characters) is too long" in refused.value.message, refused.value.message
