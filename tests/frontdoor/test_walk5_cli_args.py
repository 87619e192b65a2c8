"""Arguments the CLI refuses itself, in one line naming the argument: an empty JOB_ID (``"$JOB"``
unset) was "Not Found" over a gateway (the path ``/v1/jobs/``) and "job '' not found" here."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnemos.cli import main


@pytest.mark.parametrize("command", ["get", "logs", "cancel", "retry"])
def test_an_empty_job_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                         command: str) -> None:  # fmt: skip
    for name in ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as done:
        main(["jobs", command, ""])
    out, err = capsys.readouterr()
    assert done.value.code == 2 and not out, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: Invalid value for 'JOB_ID': empty: give a job id (`mnemos jobs list` lists them)")
    assert line.endswith(f"jobs {command} --help')"), line


def test_an_empty_pipeline_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """``mnemos runs list --pipeline "$P"`` with P unset listed every pipeline's runs."""
    for name in ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as done:
        main(["runs", "list", "--pipeline", " "])
    out, err = capsys.readouterr()
    assert done.value.code == 2 and not out, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: Invalid value for '--pipeline': empty: give a pipeline's name"), line
