"""A step naming a queue the platform does not declare, or asking for a pool (or GPUs) no declared pool
offers, is refused when the run starts (422 naming the step and the field), before any step runs or
the run is stored: CORTEX refused the step's job only once the steps before it had run."""

from __future__ import annotations

from typing import Any

import pytest

from mnemos.errors import PermissionDeniedError, ValidationError
from mnemos.soul.identity import Principal
from mnemos.synkron import _state


@pytest.mark.parametrize(("late", "param", "message"), [
    ({"queue": "nope"}, "spec.steps[1].queue",
     "spec.steps[1] (late).queue: 'nope' is not declared on the platform; declared queues: default, wraith."),
    ({"resources": {"pool": "gpu-big"}}, "spec.steps[1].resources.pool",
     "spec.steps[1] (late).resources.pool: it asks for pool 'gpu-big', which no pool the platform declares "
     "offers (cpu-a: pool; gpu-a: pool); declared pools: cpu-a, gpu-a."),
    ({"resources": {"gpus": 64}}, "spec.steps[1].resources.gpus", "(late).resources.gpus: it asks for 64 GPUs, which"),
    ({"resources": {"pool": "cpu-a", "selector": {"accelerator": "tpu"}}}, "spec.steps[1].resources.selector",
     "(late).resources.selector: it asks for selector accelerator=tpu, which no pool"),
])  # fmt: skip
def test_an_unknown_queue_or_pool_is_refused_before_any_step_runs(client: Any, pipelines: Any, late: dict[str, Any],
                                                                  param: str, message: str) -> None:  # fmt: skip
    first = {"name": "first", "call": pipelines.call("produce"), "params": {"n": 1, "marker": str(pipelines.marker)},
             "outputs": [{"name": "rows"}]}  # fmt: skip
    path = pipelines.write([first, {"name": "late", "call": "json:dumps", "params": {"obj": 1}, "needs": ["first"],
                                    **late}])  # fmt: skip
    with pytest.raises(ValidationError) as refused:
        client.pipelines.run(str(path), progress=False, wait=False)
    assert refused.value.status == 422 and refused.value.param == param, refused.value
    assert message in refused.value.message, refused.value.message
    assert pipelines.executions() == []  # the first step never ran
    assert _state.list_runs(client.engram, path.stem, 5) == []  # and no run was stored


def test_a_step_on_a_declared_queue_and_pool_runs(client: Any, pipelines: Any) -> None:
    step = {"name": "first", "call": pipelines.call("produce"), "queue": "default",
            "resources": {"pool": "cpu-a", "selector": {"accelerator": "cpu"}},
            "params": {"n": 1, "marker": str(pipelines.marker)}, "outputs": [{"name": "rows"}]}  # fmt: skip
    path = pipelines.write([step])
    state = client.pipelines.run(str(path), progress=False).state()
    assert state["status"] == "succeeded", state["error"]


def test_a_developers_run_may_not_put_steps_on_the_platforms_own_queue(client: Any, pipelines: Any) -> None:
    """``POST /v1/jobs`` refuses the queue WRAITH's maintenance runs on (``wraith``) to developers; a step's
    job, submitted as the run's principal, went there all the same (a pipeline's ``queue: ${q}``)."""
    step = {"name": "first", "call": pipelines.call("produce"), "queue": "${q}",
            "params": {"n": 1, "marker": str(pipelines.marker)}, "outputs": [{"name": "rows"}]}  # fmt: skip
    path = pipelines.write([step], params={"q": "default"})
    developer = Principal("dev-queue", "developer", "apikey")
    with pytest.raises(PermissionDeniedError) as refused:
        client.pipelines.run(str(path), {"q": "wraith"}, progress=False, wait=False, principal=developer)
    assert refused.value.status == 403 and refused.value.param == "spec.steps[0].queue", refused.value
    assert "operators and admins only" in refused.value.message
    assert pipelines.executions() == [] and _state.list_runs(client.engram, path.stem, 5) == []
    operator = Principal("ops-queue", "operator", "apikey")
    state = client.pipelines.run(str(path), {"q": "wraith"}, progress=False, principal=operator).state()
    assert state["status"] == "succeeded", state["error"]
