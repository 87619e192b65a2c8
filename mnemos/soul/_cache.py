"""A value loaded in a worker thread and kept fresh without blocking requests."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from mnemos.errors import UnavailableError

T = TypeVar("T")
log = logging.getLogger(__name__)


class RefreshingValue(Generic[T]):
    """``await get()`` returns the cached value; older than ``refresh_s`` it is reloaded in the
    background (the caller gets the current one), older than ``max_stale_s`` the caller waits for
    the reload. One load runs at a time; a failed load keeps the old value and is retried.

    Args:
        load: a blocking function (it runs in a worker thread).
        what: named in the error when nothing could ever be loaded.
    """

    def __init__(self, load: Callable[[], T], *, refresh_s: float, max_stale_s: float, what: str) -> None:
        self._load = load
        self.refresh_s = refresh_s
        self.max_stale_s = max(max_stale_s, refresh_s)
        self.what = what
        self._value: T | None = None
        self._loaded = False
        self._loaded_at = -math.inf
        self._inflight: asyncio.Task[T] | None = None

    def age(self) -> float:
        return time.monotonic() - self._loaded_at

    async def get(self) -> T:
        age = self.age()
        if not self._loaded or age > self.max_stale_s:
            return await self.refresh()
        if age > self.refresh_s and self._inflight is None:
            task = self._start()
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return self._value  # type: ignore[return-value]

    async def refresh(self, *, min_interval: float = 0.0) -> T:
        """Reload now (joining a reload in flight); skipped when the value is younger than
        ``min_interval`` (so that requests naming unknown keys cannot force a reload each)."""
        if self._loaded and self.age() < min_interval:
            return self._value  # type: ignore[return-value]
        return await asyncio.shield(self._inflight or self._start())

    def _start(self) -> asyncio.Task[T]:
        self._inflight = asyncio.ensure_future(self._reload())
        return self._inflight

    async def _reload(self) -> T:
        try:
            value = await asyncio.to_thread(self._load)
        except Exception as exc:  # noqa: BLE001 - a store hiccup: keep serving what we have
            if not self._loaded:
                raise UnavailableError(f"cannot load {self.what}: {type(exc).__name__}") from None
            log.warning("reloading %s failed (%s); keeping the previous value", self.what, type(exc).__name__)
            self._loaded_at = time.monotonic() - self.max_stale_s + 1.0
            return self._value  # type: ignore[return-value]
        finally:
            self._inflight = None
        self._value, self._loaded, self._loaded_at = value, True, time.monotonic()
        return value
