"""``mnemos run --follow`` prints what a step prints also where its job's id is a hash: a run id and
a step name too long for ``<run>.<step>.<n>`` (``synkron._jobs.job_key``: more than 128
characters, a pipeline name of 100 with a step name of 40) showed the step's transitions but none
of its lines."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from mnemos.errors import MnemosError


def test_run_follow_prints_the_lines_of_a_step_whose_job_id_is_hashed(env: dict[str, str], pipelines: Any) -> None:
    from mnemos.cli import run

    step = "download-and-normalize-the-support-tickets"
    path = pipelines.write(
        [{"name": step, "script": "echo hello from the step\necho and a second line"}],
        name="nightly-embedding-refresh-for-the-customer-support-knowledge-base-" + "x" * 30,
    )
    app = typer.Typer()
    run.register(app)
    result = CliRunner().invoke(app, ["run", str(path), "--follow", "--no-cache"], env=env)
    if isinstance(result.exception, MnemosError):
        raise AssertionError(result.output + result.exception.message)
    out = result.output
    assert result.exit_code == 0, out
    run_id = out.split("run ", 1)[1].split()[0]
    assert len(f"{run_id}.{step}.1") > 128, run_id  # its job's id is a hash
    lines = out.splitlines()
    assert f"{step} | hello from the step" in lines and f"{step} | and a second line" in lines, out
