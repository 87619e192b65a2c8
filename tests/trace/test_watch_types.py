"""``client.watch(types)`` in the embedded mode (``mnemos.trace.events.watch``) reads ``types`` as
``GET /v1/events`` does: ``watch("resource")`` was the letters r, e, s… and ``watch(["jobs"])`` a
family no event has: both watched without end and never yielded, where the gateway answers 422."""

from __future__ import annotations

import time

import pytest

from mnemos.errors import ValidationError
from mnemos.trace.events import bus, watch


def test_unknown_families_are_refused_and_a_string_is_a_list(ray_cluster: None) -> None:
    import ray

    for types in (["jobs"], "job,runs", ["resource", "model.status", "Job"]):
        with pytest.raises(ValidationError, match="unknown event family") as refused:
            list(watch(types, timeout=0.5))
        assert refused.value.param == "types"

    after = ray.get(bus().last.remote())
    event = {"type": "resource.configured", "subject": "Policy/watch-types", "owner": None, "ts": time.time(),
             "data": {"kind": "Policy", "name": "watch-types", "generation": 1, "action": "configured"}}  # fmt: skip
    ray.get(bus().publish.remote([event]))
    for types in ("resource", "job, resource", ["resource.configured"]):
        seen = next(iter(watch(types, after=after, timeout=30)), None)
        assert seen is not None and seen["subject"] == "Policy/watch-types", (types, seen)


def test_types_that_are_not_strings_are_named() -> None:
    """``watch([Model])`` or ``watch([123])`` was ``AttributeError: 'int' object has no attribute 'strip'``."""
    from mnemos.genome import Model
    from mnemos.trace.events import wanted_types

    for types in ([123], [Model], 5, ("job", None)):
        with pytest.raises(ValidationError, match="types: expected event families or types as strings") as refused:
            wanted_types(types)  # type: ignore[arg-type]
        assert refused.value.param == "types"
    assert wanted_types(t for t in ("job", "run")) == ("job", "run")  # a generator is read once, not lost
