"""Small builders shared by tests."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(capsys: Any, *args: str, code: int = 0) -> tuple[str, str]:
    """``mnemos ARGS`` in this process: its stdout and stderr, once it exited ``code`` without a traceback."""
    import pytest

    import mnemos.cli as cli

    environ = dict(os.environ)  # `--url` sets MNEMOS_URL for the command: not for the tests after it
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main([*args])
            raise SystemExit(0)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    out, err = capsys.readouterr()
    assert exited.value.code == code, f"mnemos {' '.join(args)} exited {exited.value.code}\n{out}\n{err}"
    assert "Traceback" not in out + err
    return out, err


def model_doc(name: str, engine: str = "echo", **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "genome.mnemos.dev/v1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {
            "family": "test",
            "version": "1",
            "artifact": {"uri": "file:///dev/null"},
            "runtime": {"engine": engine},
            "resources": {"cpus": 0.1},
        },
    }
    doc["spec"].update(spec)
    return doc


def start_auth_gateway(
    root: Path, users: dict[str, str], documents: list[dict[str, Any]], *, rate: int = 1000
) -> tuple[str, Any, Any, Any, dict[str, str]]:
    """RELAY with authentication on, on the running Ray cluster, over a private ENGRAM root.

    Args:
        root: a fresh folder for ENGRAM.
        users: API-key holder name → role; one key is made for each.
        documents: resources applied before the gateway is synced (Functions, Pipelines, …).
        rate: the per-principal rate limit (requests/s and burst), high enough not to refuse tests.

    Returns:
        ``(url, client, settings, identity_store, keys)``; stop it with ``stop_gateway()``.
    """
    import os

    import ray

    import mnemos
    from mnemos.config import load_settings
    from mnemos.relay import ensure, stop
    from mnemos.soul import IdentityStore

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(var, None)
    stop(shutdown_serve=True)
    port = free_port()
    settings = load_settings(
        engram={"uri": str(root / "engram")},
        relay={"port": port, "auth": True, "rateLimit": {"requestsPerSecond": rate, "burst": rate}},
    )
    client = mnemos.connect(settings=settings)
    controller = ensure(settings, client.engram)
    client.component("cortex")
    store = IdentityStore.from_settings(settings, client.engram)
    keys = {name: store.create_api_key(f"{name}-user", role).secret for name, role in users.items()}
    if documents:
        client.apply(documents)
    ray.get(controller.wait_synced.remote(None, 240))
    return f"http://127.0.0.1:{port}", client, settings, store, keys


def stop_gateway() -> None:
    """Stop the gateway ``start_auth_gateway`` started, and Serve with it."""
    from ray import serve

    from mnemos.relay import stop

    stop(shutdown_serve=True)
    serve.shutdown()
