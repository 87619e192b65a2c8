"""A Function's parameter schema is checked against callers' kwargs inside the gateway: it may not
make the gateway fetch a URL or read a file (``$ref`` outside the schema), at apply or at a call."""

from __future__ import annotations

import socket
import threading
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
