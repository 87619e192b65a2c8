"""The public modules type-check under ``mypy --strict`` (pyproject's ``[[tool.mypy.overrides]]``).

The public surface is what users import: ``mnemos``, ``mnemos.client``, ``mnemos.remote`` and each
component's ``__init__``. mypy reads what they import (without reporting on it), so a public name
whose type breaks downstream fails here. No Ray is started.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _public_files() -> list[str]:
    files = ["mnemos/__init__.py", "mnemos/client.py", "mnemos/remote.py"]
    files += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "mnemos").glob("*/__init__.py"))
    return files


def test_the_strict_override_lists_every_public_module() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    strict = next(o for o in config["overrides"] if o.get("strict"))
    expected = {f.removesuffix("/__init__.py").removesuffix(".py").replace("/", ".") for f in _public_files()}
    assert set(strict["module"]) == expected


def test_public_modules_pass_mypy_strict() -> None:
    run = subprocess.run([sys.executable, "-m", "mypy", *_public_files()], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
