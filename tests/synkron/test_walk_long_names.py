"""A pipeline with the longest name the registry takes (234 characters) and a step with the longest
step name (63) runs: its step's job was refused by CORTEX ("name: String should have at most 200
characters", the job's display name ``<run>/<step>``), so the run failed after it was accepted."""

from __future__ import annotations

from typing import Any

from mnemos.cortex.job import JobOptions
from mnemos.genome.pipeline import MAX_NAME
from mnemos.synkron._jobs import MAX_JOB_NAME, job_name

STEP = "s" * 63


def test_a_steps_job_name_fits_a_jobs_display_name() -> None:
    run_id = "p" * 255
    name = job_name(run_id, STEP)
    assert len(name) == MAX_JOB_NAME and name.endswith(f"…/{STEP}") and name.startswith("p" * 100)
    JobOptions(name=name)  # CORTEX takes it
    assert job_name("short-20261206-000000-abcd", "step") == "short-20261206-000000-abcd/step"


def test_a_pipeline_with_the_longest_names_runs(client: Any, pipelines: Any) -> None:
    path = pipelines.write([{"name": STEP, "call": pipelines.call("produce"),
                             "params": {"n": 1, "marker": str(pipelines.marker)}, "outputs": [{"name": "rows"}]}],
                           name="p" * (MAX_NAME - 9))  # fmt: skip
    run = client.pipelines.run(str(path), progress=False)
    state = run.state()
    assert len(state["pipeline"]["name"]) == MAX_NAME == 234
    assert state["status"] == "succeeded", state["error"]
    assert run.read("rows") == b'{"id":"0","text":"item 0"}\n'
