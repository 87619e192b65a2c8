"""Fixtures for SYNKRON tests: one connected client on a package-wide ENGRAM, pipelines whose python
steps live in a module written next to the pipeline file, and models served by RELAY."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from tests_support import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))  # synkron_support, under any --import-mode

from synkron_support import MINILM, PipelineFactory, Served, echo_model  # noqa: E402


@pytest.fixture(scope="package")
def package_settings(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One ENGRAM root for the package (CORTEX serves one root at a time: no restart per test)."""
    from mnemos.config import load_settings

    root = tmp_path_factory.mktemp("synkron") / "engram"
    return load_settings(engram={"uri": str(root)}, relay={"port": free_port(), "auth": False})


@pytest.fixture(scope="package")
def client(ray_cluster: None, package_settings: Any) -> Any:
    import mnemos

    return mnemos.connect(settings=package_settings)


@pytest.fixture()
def env(client: Any, package_settings: Any) -> dict[str, str]:
    """The environment of a CLI command run beside the package's platform (auth off)."""
    import ray

    return {
        "MNEMOS_RAY_ADDRESS": ray.get_runtime_context().gcs_address,  # a platform is up: the test's cluster
        "MNEMOS_ENGRAM__URI": package_settings.engram.uri,
        "MNEMOS_RELAY__PORT": str(package_settings.relay.port),
        "MNEMOS_RELAY__AUTH": "false",
    }


@pytest.fixture()
def pipelines(tmp_path: Path) -> PipelineFactory:
    return PipelineFactory(tmp_path)


@pytest.fixture(scope="package")
def served(client: Any, package_settings: Any) -> Any:
    """RELAY (Serve on a free port, auth off) with the two models ready."""
    from mnemos.relay import ensure, stop

    stop(shutdown_serve=True)
    platform = Served(client, ensure(package_settings, client.engram), package_settings.relay.port)
    platform.apply(echo_model(), MINILM)
    yield platform
    stop(shutdown_serve=True)
