"""A store that cannot be used on ``mnemos restore`` / ``wraith snapshots``: one line naming the URL, the
cause and the fix, a non-zero exit, no traceback and no credential."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnemos.errors import MissingDependencyError, UnavailableError

SECRET = "wJalrXUtnFEMI-not-a-real-secret"


def _mnemos(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MNEMOS_"))}
    clean |= {
        "MNEMOS_HOME": str(tmp_path / "home"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),  # no credentials from anywhere
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
        **env,
    }
    return subprocess.run([sys.executable, "-m", "mnemos", *args], env=clean, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def _one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    for word in words:
        assert word in line
    return line


@pytest.mark.parametrize("option", ["--to", "--from"])
def test_s3_without_credentials(tmp_path: Path, option: str) -> None:
    done = _mnemos(tmp_path, "restore", "latest", option, "s3://nobucket-xyz/x")
    _one_line(done, UnavailableError.exit_code, f"{option} s3://nobucket-xyz/x", "credentials", "AWS_ACCESS_KEY_ID")


def test_s3_endpoint_that_does_not_answer(tmp_path: Path) -> None:
    done = _mnemos(tmp_path, "restore", "latest", "--to", "s3://nobucket-xyz/x", AWS_ENDPOINT_URL="http://127.0.0.1:1",
                   AWS_ACCESS_KEY_ID="AKIAEXAMPLEKEY", AWS_SECRET_ACCESS_KEY=SECRET)  # fmt: skip
    line = _one_line(done, UnavailableError.exit_code, "--to s3://nobucket-xyz/x", "connect", "AWS_ENDPOINT_URL")
    assert SECRET not in line


@pytest.mark.parametrize("option", ["--to", "--from"])
def test_a_protocol_whose_package_is_missing(tmp_path: Path, option: str) -> None:
    pytest.importorskip("fsspec")
    if "gcsfs" in sys.modules or _installed("gcsfs"):
        pytest.skip("gcsfs is installed here")
    done = _mnemos(tmp_path, "restore", "latest", option, "gs://x/y")
    _one_line(done, MissingDependencyError.exit_code, f"{option} gs://x/y", "pip install gcsfs")


def test_snapshots_of_an_s3_store_without_credentials(tmp_path: Path) -> None:
    done = _mnemos(tmp_path, "wraith", "snapshots", "--from", "s3://nobucket-xyz/x")
    _one_line(done, UnavailableError.exit_code, "--from s3://nobucket-xyz/x", "credentials")


def test_a_url_with_a_password_is_shown_without_it(tmp_path: Path) -> None:
    done = _mnemos(tmp_path, "restore", "latest", "--to", f"s3://user:{SECRET}@nobucket-xyz/x")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert SECRET not in done.stderr + done.stdout


def _installed(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None
