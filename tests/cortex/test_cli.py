"""``mnemos jobs …`` in-process (typer's CliRunner) against this package's CORTEX."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from cortex_support import wait_until
from typer.testing import CliRunner

from mnemos.cli.jobs import app as jobs_app
from mnemos.errors import AdmissionError, MnemosError, NotFoundError

T = "mnemos.cortex.testing"
root = typer.Typer()
root.add_typer(jobs_app, name="jobs")


@pytest.fixture()
def cli(client: Any) -> Any:
    """Run ``mnemos jobs ARGS``; returns the result (exceptions are left for the test to look at)."""
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(root, ["jobs", *args], catch_exceptions=True)

    return run


def _ok(result: Any) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return str(result.output)


def test_submit_and_wait_prints_the_result(cli: Any) -> None:
    assert _ok(cli("submit", f"{T}:add", "2", "3", "--wait")).strip() == "5"
    out = json.loads(_ok(cli("submit", f"{T}:echo", "x", '{"a": [1]}', "-k", "n=4", "--wait", "-o", "json")))
    assert out["value"] == {"args": ["x", {"a": [1]}], "kwargs": {"n": 4}} and out["status"] == "succeeded"


def test_submit_get_list_logs_cancel(cli: Any, tmp_path: Path) -> None:
    line = _ok(cli("submit", f"{T}:shout", "from the cli", "--name", "shouter", "-l", "team=cli", "-p", "2"))
    job_id = line.split()[1]
    assert line.startswith(f"job {job_id} queued")
    _ok(cli("submit", f"{T}:noop", "--wait"))
    view = yaml.safe_load(_ok(cli("get", job_id, "-o", "yaml")))
    assert view["name"] == "shouter" and view["labels"] == {"team": "cli"} and view["priority"] == 2
    wait_until(lambda: json.loads(_ok(cli("get", job_id, "-o", "json")))["status"] == "succeeded", what="the job")
    assert _ok(cli("logs", job_id)).splitlines()[0] == "from the cli"
    listed = json.loads(_ok(cli("list", "--status", "succeeded", "-n", "500", "-o", "json")))
    assert job_id in {j["id"] for j in listed}
    table = _ok(cli("list", "-n", "5"))
    assert "STATUS" in table.splitlines()[0]
    assert "FIELD" in _ok(cli("get", job_id))

    gate = tmp_path / "gate"
    held = _ok(cli("submit", f"{T}:wait_for_file", str(gate), "--queue", "serial")).split()[1]
    assert _ok(cli("cancel", held)).strip() == f"job {held} cancelled"
    gate.touch()


def test_stats_show_queues_pools_and_counts(cli: Any, client: Any) -> None:
    _ok(cli("submit", f"{T}:noop", "--wait"))
    data = json.loads(_ok(cli("stats", "-o", "json")))
    assert set(data["queues"]) >= {"default", "wraith", "serial"} and data["jobs"]["succeeded"] >= 1, data
    table = _ok(cli("stats"))
    for pool in client.settings.neuron.pools:
        line = next(x for x in table.splitlines() if x.startswith(f"pool {pool.name} "))
        assert "workers" in line, table
    concurrency = client.settings.cortex.queues["serial"].concurrency
    assert any(x.startswith("queue serial ") and f"/{concurrency}" in x for x in table.splitlines()), table
    assert next(x for x in table.splitlines() if x.startswith("jobs ")).count("succeeded") == 1


def test_list_pages_with_after(cli: Any) -> None:
    ids = [_ok(cli("submit", f"{T}:noop", "--queue", "limited")).split()[1] for _ in range(3)]
    first = _ok(cli("list", "--queue", "limited", "-n", "2"))
    assert f"more: mnemos jobs list --after {ids[1]}" in first  # the table says how to get the next page
    page = json.loads(_ok(cli("list", "--queue", "limited", "-n", "2", "--after", ids[1], "-o", "json")))
    assert page[0]["id"] == ids[0]
    missing = cli("list", "--after", "no-such-job")
    assert isinstance(missing.exception, NotFoundError) and missing.exception.param == "after"


def test_errors_are_mnemos_errors(cli: Any) -> None:
    missing = cli("get", "no-such-job")
    assert isinstance(missing.exception, NotFoundError) and missing.exception.exit_code == 3
    refused = cli("submit", f"{T}:noop", "--gpus", "1")
    assert isinstance(refused.exception, AdmissionError) and "rule resources.gpus" in refused.exception.message
    failed = cli("submit", f"{T}:fail", "from the cli", "--max-attempts", "1", "--wait")
    assert isinstance(failed.exception, MnemosError) and "RuntimeError: from the cli" in failed.exception.message
    bad = cli("submit", "not-a-reference")
    assert isinstance(bad.exception, MnemosError) and bad.exception.param == "function"
    bad_label = cli("submit", f"{T}:noop", "-l", "team")
    assert isinstance(bad_label.exception, MnemosError) and "NAME=VALUE" in bad_label.exception.message
