"""Shared fixtures: one Ray cluster per session, a loopback S3 server, ENGRAM roots.

MNEMOS_HOME is pointed at a temporary folder before anything else runs, so tests never touch
the user's ~/.mnemos, and the shell's gateway URL and credential are not theirs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests_support import free_port

_HOME = tempfile.mkdtemp(prefix="mnemos-test-home-")
os.environ["MNEMOS_HOME"] = _HOME
for _client_variable in ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN"):  # a developer's shell: `mnemos up` suggests
    os.environ.pop(_client_variable, None)  # `export MNEMOS_API_KEY=…`; tests that want a gateway set their own
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

S3_KEY = "testing"
S3_REGION = "us-west-2"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``extra_engine`` (a second vLLM engine: minutes on 2 CPU cores) run only when
    asked, with ``-m extra_engine`` (``make test-slow``); skipped here before their fixtures start."""
    if "extra_engine" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="starts a second vLLM engine on CPU: run with `make test-slow`")
    for item in items:
        if "extra_engine" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mnemos_home() -> Path:
    return Path(_HOME)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, object]]:
    """A real S3 endpoint on 127.0.0.1 (moto's server); yields s3fs storage options."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for var, value in {
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_KEY,
        "AWS_DEFAULT_REGION": S3_REGION,
    }.items():
        os.environ.setdefault(var, value)
    options = {
        "key": S3_KEY,
        "secret": S3_KEY,
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": S3_REGION},
    }
    yield options
    server.stop()


@pytest.fixture(scope="session")
def s3fs_client(s3_server: dict[str, object]):
    import s3fs

    return s3fs.S3FileSystem(**s3_server)


@pytest.fixture()
def s3_bucket(s3fs_client, request) -> str:
    """A fresh bucket per test."""
    import re

    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{stem}-{os.urandom(3).hex()}"
    s3fs_client.mkdir(name)
    return name


@pytest.fixture()
def local_engram(tmp_path: Path):
    from mnemos.engram import Engram

    return Engram(str(tmp_path / "engram"))


@pytest.fixture()
def s3_engram(s3_server, s3_bucket):
    from mnemos.engram import Engram

    return Engram(f"s3://{s3_bucket}/root", s3_server)


@pytest.fixture(params=["local", "s3"])
def engram(request):
    """ENGRAM on a local folder and on the loopback S3."""
    return request.getfixturevalue(f"{request.param}_engram")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster for the whole session, with room for Serve replicas (num_cpus=8)."""
    import ray

    os.environ.pop("RAY_ADDRESS", None)
    # Serve's handles as the cluster `mnemos up` starts has them (relay.highThroughput): in every
    # process of the cluster a handle routes on the event loop of its first caller. Drivers (this
    # one, a user's notebook) keep Serve's default, a router on a loop of its own.
    os.environ["RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"] = "0"
    try:
        ray.init(address="local", num_cpus=8, include_dashboard=False, namespace="mnemos", log_to_driver=False)
    finally:
        del os.environ["RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"]
    yield
    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # noqa: BLE001
        pass
    ray.shutdown()


@pytest.fixture()
def settings(tmp_path: Path):
    """Settings with a private ENGRAM root for one test."""
    from mnemos.config import load_settings

    return load_settings(engram={"uri": str(tmp_path / "engram")})


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-style model with a locally trained tokenizer, in Hugging Face format (~2 s)."""
    from mnemos.neuron.models import init_tiny

    return init_tiny(tmp_path_factory.mktemp("tiny-model"), seed=0)
