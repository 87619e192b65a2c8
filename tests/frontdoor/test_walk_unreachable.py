"""A newcomer's CLI pointed at a gateway where nothing answers (a mistyped port, or a platform
brought down after `mnemos login`): one line naming what to check and how to fix it, exit 10."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests_support import free_port


def _mnemos(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    unset = ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN", "MNEMOS_RAY_ADDRESS", "RAY_ADDRESS")
    environ = {k: v for k, v in os.environ.items() if k not in unset} | {"MNEMOS_HOME": str(home)} | env
    return subprocess.run([sys.executable, "-m", "mnemos", *args], cwd=home, env=environ, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize("how", ["--url", "MNEMOS_URL"])
def test_a_gateway_nothing_answers_at_says_what_to_check(tmp_path: Path, how: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    key = "mk_0123456789abcdef_not-a-real-secret-at-all"
    if how == "--url":
        proc = _mnemos(tmp_path, "--url", url, "get", "model", MNEMOS_API_KEY=key)
    else:
        proc = _mnemos(tmp_path, "get", "model", MNEMOS_URL=url, MNEMOS_API_KEY=key)
    assert proc.returncode == 10, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    # It once ended at "is not reachable: [Errno 111] Connection refused", with no word on the fix.
    assert lines[0].startswith(f"error: the MNEMOS gateway at {url} is not reachable: "), lines[0]
    assert "check the URL (--url, MNEMOS_URL or `mnemos login URL`)" in lines[0]
    assert "that the platform is up (`mnemos up` on its machine)" in lines[0]
    assert "not-a-real-secret" not in proc.stderr + proc.stdout


def test_login_to_a_gateway_nothing_answers_at_stores_nothing(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = _mnemos(tmp_path, "login", url, "--api-key", "mk_0123456789abcdef_not-a-real-secret-at-all")
    assert proc.returncode == 10 and "check the URL" in proc.stderr and "not-a-real-secret" not in proc.stderr, proc
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "credentials").exists() and not (tmp_path / "endpoint.json").exists()


@pytest.mark.parametrize("job_id", ["", " ", "a/b"])
def test_an_id_no_job_can_have_is_not_found_before_any_request(job_id: str) -> None:
    """``client.jobs.get("")`` asked ``GET /v1/jobs/`` and heard "Not Found" (the route, not a job);
    such an id is the local client's ``job '' not found``, and nothing is asked (nothing listens here)."""
    import mnemos
    from mnemos.errors import NotFoundError

    with mnemos.connect(f"http://127.0.0.1:{free_port()}", api_key="mk_" + "a" * 40) as client:
        for call in (client.jobs.get, client.jobs.cancel, client.jobs.logs):
            with pytest.raises(NotFoundError, match="^job .* not found$"):
                call(job_id)
