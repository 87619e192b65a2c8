"""Calling served models from pipeline steps: the Serve application ``model-<name>`` of RELAY.

Steps reach a model's deployment through a Serve handle (no HTTP hop, no gateway), at batch
priority, so that interactive requests through the gateway go first. They are metered as the
principal that started the run (``step_meter``): its limits, budgets and spend, like its requests
through the gateway.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from mnemos._actors import NAMESPACE, RELAY_CONTROLLER, any_loop_handle, model_app, serve_applications
from mnemos.errors import UnavailableError

T = TypeVar("T")



app_name = model_app  # the Serve application of a Model, deployed by RELAY


def _app_running(app: str) -> bool:
    status = serve_applications().get(app) or {}  # (not serve.status(): see serve_applications)
    return str(status.get("status", "")).endswith("RUNNING")


def model_handle(model: str, timeout: float = 600.0) -> Any:
    """The Serve handle of ``model``'s deployment, waiting for RELAY to finish deploying it.

    Raises:
        UnavailableError: the model is not deployed (or failed to deploy) within ``timeout``.
    """
    import ray

    app = app_name(model)
    if not _app_running(app):
        try:
            controller = ray.get_actor(RELAY_CONTROLLER, namespace=NAMESPACE)
        except ValueError:
            controller = None
        if controller is not None:
            try:
                ray.get(controller.wait_synced.remote(None, timeout), timeout=timeout + 30)
            except Exception as exc:  # noqa: BLE001 - reported below with the route's message
                del exc
            status: Any = ray.get(controller.status.remote(), timeout=60)
            routes: dict[str, Any] = status.get("models") or {}
            route: dict[str, Any] = routes.get(model) or {}
            if route.get("status") == "failed":
                raise UnavailableError(f"model {model!r} failed to deploy: {route.get('message')}", param="modelRef")
        if not _app_running(app):
            raise UnavailableError(
                f"model {model!r} is not deployed (no running Serve application {app!r}): apply the Model "
                "with the platform up (`mnemos up`, `mnemos apply -f …`) and wait for it to be ready",
                param="modelRef",
            )
    return any_loop_handle(model)  # (Serve's cached handle, in its high-throughput mode, binds the first step's loop)


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, also when this thread already has a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="synkron-async")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def bounded_map(
    fn: Callable[[int, Any], Awaitable[T]],
    items: list[Any],
    concurrency: int,
    on_done: Callable[[int], None] | None = None,
) -> list[T]:
    """``fn(i, item)`` for every item with at most ``concurrency`` in flight; results in order.

    The first failure cancels the calls still in flight (and waits for them to end) and is raised:
    a spent budget stops the step at once, and nothing runs on after the step has failed.
    """
    results: list[Any] = [None] * len(items)
    cursor = iter(range(len(items)))
    done = 0

    async def worker() -> None:
        nonlocal done
        for i in cursor:
            results[i] = await fn(i, items[i])
            done += 1
            if on_done is not None:
                on_done(done)

    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, min(concurrency, len(items))))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return results


class ProgressReporter:
    """Reports ``(done, total)`` of a step to the SYNKRON service, at most every ``interval`` s."""

    def __init__(self, service: str | None, run_id: str, step: str, total: int, interval: float = 0.5) -> None:
        self.run_id, self.step, self.total, self.interval = run_id, step, total, interval
        self._actor: Any = None
        self._last = 0.0
        self._start = time.monotonic()
        if service:
            import ray

            try:
                self._actor = ray.get_actor(service, namespace=NAMESPACE)
            except Exception:  # noqa: BLE001 - no service (a step run by hand): report nowhere
                self._actor = None

    def __call__(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if self._actor is None or (not force and now - self._last < self.interval and done < self.total):
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        try:
            self._actor.progress.remote(self.run_id, self.step, done, self.total, done / elapsed)
        except Exception:  # noqa: BLE001 - progress is best effort
            self._actor = None


def step_meter(ctx: dict[str, Any], model: str) -> Any:
    """The ``ModelMeter`` of a model step: the run's principal's limits on ``model``; a call over a
    rate limit waits for it (up to 15 minutes), a spent budget fails the step naming the budget."""
    from mnemos.soul.limits import MeteredIdentity, ModelMeter

    identity = MeteredIdentity.load(ctx.get("meter") or {"subject": "anonymous"})
    return ModelMeter(ctx["engram"], identity, model, max_wait_s=900.0)
