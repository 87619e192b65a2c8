"""Helpers of the console tests (imported as ``console_support``; the conftest puts this folder on
``sys.path``): the running gateway's handle, the screenshot writer and the console without a cluster."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@dataclass
class Console:
    """The running gateway: its URL, the embedded client, and an API key per role."""

    url: str
    client: Any
    controller: Any
    keys: dict[str, str]


def screenshot(page: Any, name: str) -> None:
    """Write ``docs/images/console-<name>.png`` (1280×800)."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / f"console-{name}.png"))


def local_edge(root: Path) -> tuple[Any, Any, Any]:
    """Settings (authentication on), ENGRAM under ``root`` and RELAY's edge seam, its guard on a
    local rate limiter that re-reads revocations at once: the console without a cluster."""
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._edge import EdgeSeam
    from mnemos.soul import EdgeGuard, LocalRateLimiter

    settings = load_settings(engram={"uri": str(root / "engram")}, relay={"auth": True})
    engram = Engram.from_settings(settings)
    edge = EdgeSeam(settings, engram)
    edge.guard = EdgeGuard(settings, engram, limiter=LocalRateLimiter(), refresh_s=0.0, max_stale_s=0.0)
    return settings, engram, edge


class Ledger:
    """SOUL's usage ledger as the Keys page calls it (``await ledger.usage.remote(since, until)``):
    it answers ``rows``, each of the hour a minute ago."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.usage = self

    def remote(self, since: float, until: float | None) -> Any:
        async def rows() -> list[dict[str, Any]]:
            return [{**row, "hour": time.time() - 60} for row in self.rows]

        return rows()


def _no_bus() -> Any:
    raise RuntimeError("no event bus here: the page renders without one")


def local_console(root: Path, monkeypatch: Any, usage: list[dict[str, Any]]) -> dict[str, Any]:
    """The console's pages over ``local_edge(root)``, SOUL's ledger answering the ``usage`` rows:
    ``{"http": a TestClient, "store": the IdentityStore, "engram": ENGRAM}``."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from mnemos.relay.console.app import build_router
    from mnemos.soul import IdentityStore

    monkeypatch.setattr("mnemos.trace.events.bus", _no_bus)  # no Ray cluster started from a page
    settings, engram, edge = local_edge(root)
    app = FastAPI()
    app.state.meter = SimpleNamespace(governor=SimpleNamespace(actor=Ledger(usage)))
    app.include_router(build_router(SimpleNamespace(engram=engram, settings=settings, models={}), edge))
    return {"http": TestClient(app), "store": IdentityStore.from_settings(settings, engram), "engram": engram}
