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
