"""The kubernetes client is imported lazily; a missing optional library names what to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mnemos.errors import MissingDependencyError
from mnemos.kuberay._deps import require

from .support import REPO


def test_importing_the_package_does_not_import_kubernetes() -> None:
    code = "import sys, mnemos.kuberay, mnemos.cli.kuberay; print('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_missing_library_names_the_extra(monkeypatch) -> None:
    for name in ("kubernetes", "kubernetes.client"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail, as when not installed
    with pytest.raises(MissingDependencyError) as info:
        require("kubernetes.client")
    assert "pip install 'mnemos[kuberay]'" in info.value.message
    assert info.value.exit_code == 9
