"""A script step's output as it streams: masked line by line, long lines cut without losing a secret."""

from __future__ import annotations

import os

import pytest

from mnemos.synkron.steps import _READ_CHARS, _run_script

SECRET = "s3cr3t-t0ken-value"
ENV = {"PATH": os.environ["PATH"], "TOKEN": SECRET, "LANG": "C.UTF-8"}


def test_a_secret_across_the_cut_of_a_long_line_is_masked(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    before = _READ_CHARS - 7  # the secret starts 7 characters before the first read ends
    script = f'printf "%0{before}d" 0; printf "%s" "$TOKEN"; printf "tail\\n"; echo "again $TOKEN"'
    code, tail = _run_script(script, ENV, str(tmp_path), None, [SECRET])
    streamed = capsys.readouterr().out
    assert code == 0 and SECRET not in streamed and SECRET not in tail
    assert streamed == "0" * before + "***tail\nagain ***\n"
    assert tail == streamed[-len(tail):] and tail.endswith("***tail\nagain ***\n")


def test_a_line_without_an_end_is_written_whole(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    code, _ = _run_script('printf "no newline %s" "$TOKEN"', ENV, str(tmp_path), None, [SECRET])
    assert code == 0 and capsys.readouterr().out == "no newline ***"
    code, tail = _run_script("echo out; exit 3", ENV, str(tmp_path), None, [])
    assert (code, tail, capsys.readouterr().out) == (3, "out\n", "out\n")
