"""RELAY fixtures: one gateway (Serve on a free port, auth off) for the whole tests/relay package.

The gateway runs on the session's Ray cluster with a private ENGRAM root. Serve is shut down and
the relay controller killed when the package is done, so other test packages start clean.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# relay_support sits beside this file; make it importable under any --import-mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from relay_support import Relay, free_port  # noqa: E402
from tests_support import model_doc  # noqa: E402


@pytest.fixture(scope="package")
def relay(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """The MNEMOS gateway with one ``echo`` Model (``echo``) ready."""
    from ray import serve

    import mnemos
    from mnemos.config import load_settings
    from mnemos.relay import ensure, stop

    stop(shutdown_serve=True)  # a clean Serve, on our port
    root = tmp_path_factory.mktemp("relay") / "engram"
    port = free_port()
    settings = load_settings(engram={"uri": str(root)}, relay={"port": port, "auth": False})
    client = mnemos.connect(settings=settings)
    controller = ensure(settings, client.engram)
    gw = Relay(client=client, controller=controller, port=port, settings=settings)
    gw.apply(model_doc("echo"))
    yield gw
    stop(shutdown_serve=True)
    serve.shutdown()


@pytest.fixture(scope="package")
def tiny_chat_ref(relay: Relay, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny random chat model stored in the gateway's ENGRAM under ref ``models/tiny-chat``."""
    from mnemos.neuron.models import init_tiny, store_model

    folder = init_tiny(tmp_path_factory.mktemp("tiny-chat"), seed=0)
    return store_model(relay.client.engram, Path(folder), "tiny-chat")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to 127.0.0.1 never go through a proxy from the environment."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        if var in os.environ:
            monkeypatch.delenv(var)


@pytest.fixture(scope="package")
def governed(relay: Relay) -> Iterator[Relay]:
    """A second gateway application on the same Serve instance (route ``/gov``): auth on, two
    replicas, the same registry and ``ratelimit`` actor; for limits, budgets and usage tests.

    The default per-principal rate is raised far above the default 50 requests/s: the budget
    test's 32 streaming clients pass 50/s on a fast machine, and the limits tests set their own."""
    from ray import serve

    from mnemos.relay import build_app

    args = {"engram_uri": relay.settings.engram.uri, "num_replicas": 2, "num_cpus": 0.25,
            "settings": {"relay": {"port": relay.port, "auth": True,
                                   "rateLimit": {"requestsPerSecond": 5000, "burst": 5000}}}}  # fmt: skip
    serve.run(build_app(args), name="mnemos-governed", route_prefix="/gov")
    yield Relay(client=relay.client, controller=relay.controller, port=relay.port, settings=relay.settings,
                prefix="/gov")  # fmt: skip
    serve.delete("mnemos-governed")
