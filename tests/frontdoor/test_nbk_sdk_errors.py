"""A notebook's wrong input to the SDK is one ``MnemosError`` naming the field, raised before anything
is sent or stored: never json's, cloudpickle's or Python's own ``TypeError`` from inside the client,
and never a silent misreading (``parents="run:x"`` as the nodes ``r``, ``u``, ``n``…; settings
dropped beside a gateway URL; ``expected_generation="1"`` refused as a conflict with generation 1).

The remote client here points at a port nothing listens on: every check must fire before a request.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import mnemos
from mnemos.errors import ValidationError
from mnemos.remote import RemoteJobHandle

NOWHERE = "http://127.0.0.1:9"  # the discard port: a request would be UnavailableError, not these
FUNCTION = {
    "apiVersion": "genome.mnemos.dev/v1",
    "kind": "Function",
    "metadata": {"name": "word-count"},
    "spec": {"entrypoint": "mnemos.examples:word_count"},
}


@pytest.fixture()
def remote() -> Any:
    with mnemos.connect(NOWHERE, api_key="mk_x_y") as client:
        yield client


def _refused(param: str, call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ValidationError) as refused:
        call(*args, **kwargs)
    assert refused.value.param == param, refused.value
    assert str(refused.value).startswith(f"{param}: ") and "\n" not in str(refused.value)
    return str(refused.value)


def test_arguments_json_cannot_carry_are_named(remote: Any) -> None:
    assert "bytes" in _refused("kwargs.text", remote.jobs.submit, "word-count", text=b"one two")
    _refused("kwargs.text", remote.jobs.submit, "word-count", text={"a", "b"})
    _refused("args[1]", remote.jobs.submit, "mnemos.cortex.testing:add", 2, float("nan"))


def test_a_function_that_does_not_pickle_is_named(remote: Any) -> None:
    lock = threading.Lock()
    message = _refused("fn", remote.jobs.submit, lambda: lock.locked())
    assert "cannot be pickled" in message and "_thread.lock" in message
    _refused("fn", remote.jobs.submit, abs, lock)  # an argument that does not pickle


def test_wrong_types_of_options(remote: Any) -> None:
    assert "['run:x']" in _refused("parents", remote.jobs.submit, "word-count", text="a", parents="run:x")
    _refused("arguments", remote.jobs.submit_many, "word-count", 5)
    _refused("arguments", remote.jobs.submit_many, "word-count", "abc")
    handle = RemoteJobHandle(remote.jobs, {"id": "j-1"})
    _refused("timeout", handle.result, timeout="30s")
    _refused("timeout", remote.jobs.wait, ["j-1"], timeout="30s")
    _refused("id", remote.lineage, None)


def test_connect_refuses_what_it_would_drop_or_misread(tmp_path: Path) -> None:
    _refused("api_key", mnemos.connect, NOWHERE, api_key=5)
    _refused("settings", mnemos.connect, NOWHERE, api_key="mk_x_y", settings=mnemos.load_settings())
    _refused("engram", mnemos.connect, NOWHERE, api_key="mk_x_y", engram={"uri": str(tmp_path)})
    _refused("address", mnemos.connect, 5)
    assert "'ray://host:10001'" in _refused("address", mnemos.connect, "nonsense")


def test_embedded_generations_and_lineage_ids_are_checked(tmp_path: Path) -> None:
    client = mnemos.Client(mnemos.load_settings(engram={"uri": str(tmp_path / "engram")}))
    assert client.apply(FUNCTION)[0].action == "created"
    message = _refused("expected_generation", client.apply, FUNCTION, expected_generation="1")
    assert "got str '1'" in message  # was ConflictError: "is generation 1, not generation 1"
    _refused("expected_generation", client.delete, "Function", "word-count", expected_generation="1")
    _refused("generation", client.get, "Function", "word-count", generation="x")
    _refused("id", client.lineage, None)
    assert client.apply(FUNCTION, expected_generation=1)[0].action == "unchanged"
    assert client.get("Function", "word-count", generation=1).spec.entrypoint == "mnemos.examples:word_count"
