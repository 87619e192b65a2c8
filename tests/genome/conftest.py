"""Fixtures for the GENOME tests: the gateway's control routes alone, as an admin calls them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # genome_support, under any --import-mode

from genome_support import Admin, control_routes  # noqa: E402


@pytest.fixture()
def control(tmp_path: Path) -> Iterator[Any]:
    """A ``TestClient`` of the control routes over a private ENGRAM; no gateway: the edge's answer
    is an admin, for every request."""
    with control_routes(tmp_path, Admin()) as http:
        yield http
