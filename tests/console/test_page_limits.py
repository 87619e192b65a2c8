"""The Jobs and Pipelines pages list the newest of the jobs and runs the caller may see: a developer's
own are listed however many newer ones others have submitted since, and so are the jobs of the owner
an operator filters by."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from console_support import Console

from mnemos.relay.console.data import JOBS_SHOWN, RUNS_SHOWN


@contextmanager
def _signed_in(console: Console, role: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console.url, timeout=60) as http:
        answer = http.post("/ui/signin", data={"api_key": console.keys[role]})
        assert answer.status_code == 303 and http.cookies.get("mnemos_session"), answer.text
        yield http


def _run(run_id: str, owner: str, created: float) -> dict[str, Any]:
    return {"id": run_id, "pipeline": {"name": "paged"}, "status": "succeeded", "principal": owner,
            "created": created, "finished": created, "params": {}, "steps": {}, "outputs": {}}  # fmt: skip


def test_a_developers_jobs_are_listed_however_many_newer_jobs_others_have(console: Console) -> None:
    from mnemos.cortex.testing import noop

    key = {"Authorization": f"Bearer {console.keys['developer']}"}
    mine = httpx.post(f"{console.url}/v1/jobs", headers=key, json={"function": "ticker", "kwargs": {"count": 1}},
                      timeout=30).json()  # fmt: skip
    others = console.client.jobs.submit_many(noop, range(JOBS_SHOWN + 1))  # the local admin's, newer
    console.client.jobs.wait(others, timeout=120)
    with _signed_in(console, "developer") as developer:
        assert f'data-job="{mine["id"]}"' in developer.get("/ui/jobs").text
        assert "data-job=" not in developer.get("/ui/jobs", params={"owner": "admin-user"}).text
    with _signed_in(console, "admin") as admin:
        assert f'data-job="{mine["id"]}"' in admin.get("/ui/jobs", params={"owner": "developer-user"}).text


def test_a_developers_runs_are_listed_however_many_newer_runs_others_have(console: Console) -> None:
    from mnemos.synkron import _state

    engram, now = console.client.engram, time.time()
    _state.save(engram, _run("paged-mine", "developer-user", now - 3600))
    for i in range(RUNS_SHOWN + 1):
        _state.save(engram, _run(f"paged-{i}", "admin-user", now - i))
    with _signed_in(console, "developer") as developer:
        page = developer.get("/ui/runs").text
    assert 'data-run="paged-mine"' in page and 'data-run="paged-0"' not in page
