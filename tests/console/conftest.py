"""Console fixtures: one gateway with authentication on (Serve on a free port), API keys for each
role, and headless Chromium (Debian's ``chromium``, driven by Playwright; no browser download)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "relay"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from console_support import CHROMIUM, Console  # noqa: E402
from relay_support import free_port  # noqa: E402
from tests_support import model_doc  # noqa: E402

TICKER = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Function", "metadata": {"name": "ticker"},
    "spec": {"entrypoint": "mnemos.cortex.testing:ticker", "parameters": {
        "type": "object", "additionalProperties": False, "properties": {
            "count": {"type": "integer"}, "interval": {"type": "number"}, "text": {"type": "string"}}}}}  # fmt: skip


@pytest.fixture(scope="package")
def console(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    import ray
    from ray import serve

    import mnemos
    from mnemos.config import load_settings
    from mnemos.relay import ensure, stop
    from mnemos.soul import IdentityStore

    stop(shutdown_serve=True)
    root = tmp_path_factory.mktemp("console") / "engram"
    port = free_port()
    settings = load_settings(engram={"uri": str(root)}, relay={"port": port, "auth": True})
    client = mnemos.connect(settings=settings)
    controller = ensure(settings, client.engram)
    client.component("cortex")
    store = IdentityStore.from_settings(settings, client.engram)
    keys = {role: store.create_api_key(f"{role}-user", role).secret for role in ("admin", "developer", "viewer")}
    client.apply([model_doc("echo-console"), TICKER])
    ray.get(controller.wait_synced.remote(None, 240))
    yield Console(f"http://127.0.0.1:{port}", client, controller, keys)
    stop(shutdown_serve=True)
    serve.shutdown()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])  # fmt: skip
        yield chromium
        chromium.close()


@pytest.fixture()
def page_for(browser: Any, console: Console) -> Iterator[Any]:
    """``page_for(role)``: a new 1280×800 browser context signed in with that role's API key."""
    contexts = []

    def open_as(role: str | None) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        if role is not None:
            page.goto(f"{console.url}/ui/signin")
            page.get_by_label("API key").fill(console.keys[role])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/ui/models")
        return page

    yield open_as
    for context in contexts:
        context.close()
