"""``mnemos apply`` says what it did to each resource the same way: ``<kind>/<name> <action>``, kind in lower case."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FUNCTIONS = """\
apiVersion: genome.mnemos.dev/v1
kind: Function
metadata: {name: sleeper}
spec: {entrypoint: "mnemos.examples:word_count"}
---
apiVersion: genome.mnemos.dev/v1
kind: Function
metadata: {name: shout}
spec: {entrypoint: "mnemos.examples:word_count"}
"""


def test_every_line_of_one_apply_reads_alike(tmp_path: Path) -> None:
    (tmp_path / "fns.yaml").write_text(FUNCTIONS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMOS_")} | {"MNEMOS_HOME": str(tmp_path / "h")}
    done = subprocess.run([sys.executable, "-m", "mnemos", "apply", "-f", str(tmp_path / "fns.yaml")], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "function/sleeper created (generation 1)",
        "function/shout created (generation 1)",
    ]
