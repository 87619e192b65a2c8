"""A console page's live feed, in Chromium, when the gateway refuses its stream.

A browser's ``EventSource`` that is refused (any answer but 200) stops for good and tells the page
nothing but ``error``: a page whose reconnect came after its session ended (expired while a laptop
slept, revoked, signed out in another tab) said "reconnecting…" for ever, as did one refused for
holding too many streams (429). Now the page asks for its own URL when its stream is refused: a 401
there means the session ended (it goes to the sign-in page); otherwise it retries, backing off.

The console is mounted as the gateway mounts it and served by uvicorn, over a private event bus.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from tests_support import serving


@pytest.fixture(scope="module")
def served(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The console and ``/v1/events`` (``relay.maxEventStreams``: 1) on 127.0.0.1; its URL and key store."""
    import ray
    from fastapi import FastAPI

    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._edge import EdgeMiddleware, EdgeSeam
    from mnemos.relay._errors import install_error_handlers
    from mnemos.relay.console import mount
    from mnemos.relay.event_stream import EventHub, build_router
    from mnemos.soul import EdgeGuard, IdentityStore, LocalRateLimiter
    from mnemos.trace.events import EventBus

    root: Path = tmp_path_factory.mktemp("live-feed")
    settings = load_settings(engram={"uri": str(root / "engram")}, relay={"auth": True})
    engram = Engram.from_settings(settings)
    edge = EdgeSeam(settings, engram)
    edge.guard = EdgeGuard(settings, engram, limiter=LocalRateLimiter(), refresh_s=0.0, max_stale_s=0.0)
    bus = ray.remote(EventBus).options(num_cpus=0, max_concurrency=100).remote(100)
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(EdgeMiddleware, seam=edge)
    app.include_router(build_router(edge.admit, EventHub(lambda: bus), max_streams=1))
    mount(app, SimpleNamespace(settings=settings, engram=engram, models={}), edge)
    edge.install_routes(app)
    with serving(app, lifespan="off", timeout_graceful_shutdown=1) as url:
        yield {"url": url, "store": IdentityStore.from_settings(settings, engram)}
    ray.kill(bus)


@contextlib.contextmanager
def _signed_in(browser: Any, served: dict[str, Any], key: str) -> Iterator[Any]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{served['url']}/ui/signin")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/ui/models")
        yield page
    finally:
        context.close()


def test_a_page_refused_a_stream_after_its_session_ended_goes_to_sign_in(browser: Any, served: dict[str, Any]) -> None:
    store = served["store"]
    key = store.create_api_key("nora", "viewer")
    with _signed_in(browser, served, key.secret) as page:
        expect(page.locator("#live")).to_have_text("live")

        def revoke_first(route: Any) -> None:  # the session ends between the page and its stream's (re)connect
            store.revoke(key.id)
            route.continue_()

        page.route("**/ui/events?**", revoke_first)
        page.goto(f"{served['url']}/ui/models")  # rendered with the session; its stream is refused
        page.wait_for_url("**/ui/signin", timeout=20_000)
        expect(page.get_by_label("API key")).to_be_visible()


def test_a_page_refused_for_too_many_streams_retries_until_one_closes(browser: Any, served: dict[str, Any]) -> None:
    key = served["store"].create_api_key("otto", "viewer")
    with httpx.stream("GET", f"{served['url']}/v1/events", headers={"Authorization": f"Bearer {key.secret}"},
                      timeout=30) as held:  # fmt: skip  # the key's one stream (relay.maxEventStreams: 1)
        assert held.status_code == 200
        with _signed_in(browser, served, key.secret) as page:
            expect(page.locator("#live")).to_have_text("live updates paused; retrying…")
            held.close()
            expect(page.locator("#live")).to_have_text("live", timeout=30_000)
