"""Small builders shared by tests."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
NO_RAY = (  # `python -c NO_RAY <args>`: the CLI, failing any command that would start a Ray cluster
    "import sys\n"
    "import mnemos.cradle\n"
    "def refuse(*args, **kwargs):\n"
    "    sys.exit('test: this command would have started a Ray cluster')\n"
    "mnemos.cradle.init_ray = mnemos.cradle.start_local = refuse\n"
    "from mnemos.cli import main\n"
    "main()\n"
)


def refused_422(resp: Any, param: str) -> str:
    """The response is a 422 ``validation_error`` naming ``param``; returns its message."""
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["param"]) == ("validation_error", param), error
    return str(error["message"])


V = TypeVar("V")


def until(check: Callable[[], V], what: str = "the condition", *, ready: Callable[[V], object] = bool,
          timeout: float = 120.0, interval: float = 0.05) -> V:  # fmt: skip
    """Polls ``check`` until what it returns is ``ready`` (truthy, unless told), and returns that
    (bounded by ``timeout`` seconds, a pause of ``interval`` between tries).

    Raises:
        AssertionError: naming ``what`` and what ``check`` last returned, once ``timeout`` passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if ready(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {value!r})")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free 127.0.0.1 port, in a thread, while the block runs: yields its
    URL (``http://127.0.0.1:PORT``); ``config``: more of ``uvicorn.Config``'s options (``lifespan``, …)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True, name=f"uvicorn-{port}")
    thread.start()
    try:
        until(lambda: server.started or not thread.is_alive(), f"uvicorn on port {port} to start", timeout=30)
        assert server.started, f"uvicorn on port {port} stopped before it started"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


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


_SERVE_HAPROXY = """global
    stats socket {folder}/admin.sock mode 666 level admin expose-fd listeners
    stats timeout 30s
    maxconn 4096
    nbthread 2
    tune.bufsize 16384
defaults
    mode http
    option log-health-checks
    timeout connect 5s
    timeout client 3600s
    {blank}
    {blank}
    timeout http-keep-alive 90s
    {blank}
    option httplog
    option abortonclose
    option splice-request
    option splice-response
    option redispatch 1
    retry-on conn-failure
    option http-no-delay
    option idle-close-on-response
    # Normalize 502/503/504 to 500 per Serve's default behavior.
    errorfile 502 {folder}/500.http
    errorfile 503 {folder}/500.http
    errorfile 504 {folder}/500.http
    balance leastconn
frontend prometheus
    bind :{exporter}
    mode http
    http-request use-service prometheus-exporter if {{ path /metrics }}
    no log
frontend http_frontend
    bind {host}:{front}
    acl healthcheck path -i /-/healthz
    http-request return status 200 content-type text/plain string "success" if healthcheck
    acl is_app path_beg /
    use_backend app if is_app
    default_backend default_backend
backend default_backend
    http-request return status 404 content-type text/plain string "not found"
backend app
    http-reuse always
    server replica 127.0.0.1:{replica} check
listen stats
  bind *:{stats}
  stats enable
  stats uri /stats
"""


def serve_haproxy_config(*, host: str, front: int, replica: int, exporter: int, stats: int, folder: Path) -> str:
    """The shape of the HAProxy config Ray Serve renders (``ray/serve/_private/haproxy_templates.py``,
    Ray 2.60), blank lines where an unset timeout goes: ``host`` is ``http_options.host`` (``*`` for
    0.0.0.0, a Ray pod's), ``folder`` where its admin socket and error files are."""
    return _SERVE_HAPROXY.format(blank="", host=host, front=front, replica=replica, exporter=exporter, stats=stats,
                                 folder=folder)  # fmt: skip
