"""`notebooks/quickstart.ipynb` runs clean, top to bottom, in a fresh kernel of this venv (as CI runs it)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from tests_support import REPO, free_port

NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


def _kernelspec(folder: Path) -> str:
    """A kernelspec named ``mnemos-test`` whose kernel is this interpreter (the venv's python)."""
    name = "mnemos-test"
    spec = folder / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mnemos (test)",
        "language": "python",
    }))  # fmt: skip
    return name


def _text(cell: dict) -> str:
    out = []
    for output in cell.get("outputs", []):
        out.append(output.get("text", ""))
        out.extend(str(v) for k, v in (output.get("data") or {}).items() if k in ("text/plain", "text/html"))
    return "\n".join(out)


def test_quickstart_notebook_runs_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # A gateway URL or a key in the shell would make connect() a remote client (no settings for `up`).
    unset = ("RAY_ADDRESS", "MNEMOS_RAY_ADDRESS", "MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        JUPYTER_PATH=str(tmp_path / "jupyter"),
        MNEMOS_HOME=str(tmp_path / "home"),  # a fresh platform: its own ENGRAM, its own embedded cluster
        MNEMOS_RELAY__PORT=str(free_port()),
        MNEMOS_RAY__NUM_CPUS="8",
    )
    monkeypatch.setenv("JUPYTER_PATH", env["JUPYTER_PATH"])  # where the kernel manager finds the kernelspec
    kernel = _kernelspec(tmp_path / "jupyter")
    client = NotebookClient(nb, kernel_name=kernel, timeout=900, resources={"metadata": {"path": str(REPO)}})
    client.execute(env=env)  # raises CellExecutionError (with the traceback) when a cell fails
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)
    assert not [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    text = "\n".join(_text(c) for c in code)
    assert "succeeded" in text
    assert "'prepare': 'cached'" in text and "'infer': 'cached'" in text and "'index': 'cached'" in text
    assert "photosynthesis" in text and "file:pipelines/data/prompts.jsonl" in text
    assert "model:tiny-chat@1" in text and "led to" in text
