"""``client.jobs`` of a remote client (``mnemos.connect(url)``) against the ``/v1/jobs`` router over
HTTP: the embedded client's options, its exceptions, and job ids that stay job ids in the URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from tests_support import serving

from mnemos.cortex import JobCancelledError, JobFailedError, JobTimeoutError
from mnemos.cortex.http import cortex_handle, router
from mnemos.errors import NotFoundError
from mnemos.remote import RemoteClient

T = "mnemos.cortex.testing"


@pytest.fixture()
def remote(cortex: Any) -> Iterator[RemoteClient]:
    """A ``RemoteClient`` of the jobs router served on a loopback port (no authentication: the local admin)."""
    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[cortex_handle] = lambda: cortex
    with serving(app) as url, RemoteClient(url) as client:
        yield client


def test_job_id_and_parents_are_options_not_arguments_of_the_function(remote: RemoteClient) -> None:
    job = remote.jobs.submit(f"{T}:add", 2, 3, job_id="remote-key-1")
    assert job.id == "remote-key-1" and job.result(timeout=60) == 5
    assert remote.jobs.submit(f"{T}:add", 2, 3, job_id="remote-key-1").id == "remote-key-1"  # the same job
    echoed = remote.jobs.submit(f"{T}:echo", 1, parents=["job:remote-key-1"]).result(timeout=60)
    assert echoed == {"args": [1], "kwargs": {}}


def test_result_raises_what_the_embedded_client_raises(remote: RemoteClient, tmp_path: Path) -> None:
    with pytest.raises(JobFailedError, match="failed after 1 attempt"):
        remote.jobs.submit(f"{T}:fail", max_attempts=1).result(timeout=60)
    held = remote.jobs.submit(f"{T}:wait_for_file", str(tmp_path / "gate"))
    with pytest.raises(JobTimeoutError, match="is still"):  # not UnavailableError: the gateway answered
        held.result(timeout=0.5)
    held.cancel()
    with pytest.raises(JobCancelledError):
        held.result(timeout=10)


@pytest.mark.parametrize("job_id", ["../jobs:stats", "abc?wait=1", "..", "x#y", "a/b"])
def test_a_job_id_is_one_path_segment(remote: RemoteClient, job_id: str) -> None:
    """An id with '/', '?', '#' or dots names no other route (``../jobs:stats`` was ``GET /v1/jobs:stats``,
    ``abc?wait=1`` job ``abc``): it is an unknown job, 404 naming ``id``."""
    for call in (remote.jobs.get, remote.jobs.cancel, remote.jobs.logs, remote.jobs.retry):
        with pytest.raises(NotFoundError) as err:
            call(job_id)
        assert err.value.param == "id" and repr(job_id) in err.value.message, err.value.message
