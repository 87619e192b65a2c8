"""Listings print their id column whole, however narrow the output (a pipe, ``COLUMNS=60``):
``mnemos jobs get ID`` takes what ``jobs list`` shows."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

JOB = "a7dd3582f1e24b6c9d0e1f2a3b4c5d6e"
RUN = "text-gen-artifacts-20261205-101500-3f9a"


@pytest.mark.parametrize("columns", ["40", "60", "80"])
def test_ids_are_never_cut(columns: str) -> None:
    script = textwrap.dedent(f"""
        from mnemos.cli._output import Output, emit
        from mnemos.cli.jobs import _COLUMNS
        emit([], Output.table, _COLUMNS, [({JOB!r}, "nightly-report-generation", "default", 0, "succeeded",
             "1/3", "worker-0123456789abcdef", "mnemos.examples:word_count")])
        emit([], Output.table, ("RUN", "PIPELINE", "STATUS", "STEPS"),
             [({RUN!r}, "text-gen-artifacts", "succeeded", "generate=succeeded store=succeeded")])
    """)
    env = {**os.environ, "COLUMNS": columns}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith(JOB + " ") for line in lines), done.stdout
    assert any(line.startswith(RUN + " ") for line in lines), done.stdout
    assert "STATUS" in lines[0]  # the other columns are still there, cut if need be
