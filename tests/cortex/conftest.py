"""Fixtures for CORTEX tests: one ENGRAM root and one set of queues for the package.

CORTEX serves one ENGRAM root at a time, so the package shares one: the settings are written
to a ``mnemos.yaml`` named by ``MNEMOS_CONFIG`` while the package runs, so that the CLI run
in-process sees the same settings (and the same ``cortex`` actor) as the tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# cortex_support sits beside this file; make it importable under any --import-mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cortex_support import jobs_routes  # noqa: E402

QUEUES = {
    "default": {"concurrency": 100, "backoff": {"min": "100ms", "max": "400ms"}},
    "wraith": {"concurrency": 10},
    "limited": {"concurrency": 2, "backoff": {"min": "100ms", "max": "400ms"}},
    "serial": {"concurrency": 1, "backoff": {"min": "100ms", "max": "400ms"}},
}
POOLS = [
    {"name": "cpu-a", "selector": {"accelerator": "cpu"}, "size": 2, "numCpus": 0.25, "maxConcurrency": 16},
    {"name": "gpu-a", "selector": {"accelerator": "nvidia"}, "size": 1, "numCpus": 0, "numGpus": 1},
]


@pytest.fixture(scope="package")
def cortex_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A ``mnemos.yaml`` for the package, named by ``MNEMOS_CONFIG`` while it runs."""
    root = tmp_path_factory.mktemp("cortex")
    path = root / "mnemos.yaml"
    doc = {"engram": {"uri": str(root / "engram")}, "cortex": {"queues": QUEUES}, "neuron": {"pools": POOLS}}
    path.write_text(yaml.safe_dump(doc))
    before = os.environ.get("MNEMOS_CONFIG")
    os.environ["MNEMOS_CONFIG"] = str(path)
    yield path
    if before is None:
        os.environ.pop("MNEMOS_CONFIG", None)
    else:
        os.environ["MNEMOS_CONFIG"] = before


@pytest.fixture(scope="package")
def cortex_settings(cortex_config: Path) -> Any:
    from mnemos.config import load_settings

    return load_settings()


@pytest.fixture(scope="package")
def client(ray_cluster: None, cortex_settings: Any) -> Iterator[Any]:
    """A connected client whose ``jobs`` reach this package's ``cortex`` actor."""
    import mnemos
    from mnemos.cortex import stop

    client = mnemos.connect(settings=cortex_settings)
    assert client.jobs.cortex is not None  # start CORTEX (and its pools) once for the package
    yield client
    stop()  # the next package starts its own


@pytest.fixture()
def cortex(client: Any) -> Any:
    """The ``cortex`` actor handle."""
    return client.jobs.cortex


@pytest.fixture()
def http(cortex: Any) -> Iterator[Any]:
    """``/v1/jobs`` (authentication off) over the ``cortex`` actor, in a ``TestClient``."""
    with jobs_routes(cortex) as test_client:
        yield test_client
