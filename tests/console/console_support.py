"""Helpers of the console tests (imported as ``console_support``; the conftest puts this folder on
``sys.path``): the running gateway's handle and the screenshot writer."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
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
