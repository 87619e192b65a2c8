"""The gateway's state in one ingress replica: the routing table, model handles, adapters, lineage.

The table follows ``relay-controller`` through a long-poll, so serving a request never reads the
registry: a model name is one dict lookup away from its cached Serve handles. Lineage costs a
request one list append: its events are built and written by the flusher every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from mnemos._gil import paced
from mnemos.config import Settings
from mnemos.engram import Engram
from mnemos.errors import BadRequestError, UnavailableError
from mnemos.relay._errors import ModelNotFoundError
from mnemos.relay._metering import Meter
from mnemos.relay._routes import AdapterModelRoute, AnyRoute, ModelRoute, Route
from mnemos.relay.adapters import AdapterRouter
from mnemos.relay.model_status import status_record
from mnemos.trace.lineage import LineageWriter, model_node, request_event

logger = logging.getLogger("mnemos.relay")

_LINEAGE_FLUSH_S = 2.0
_DEPLOYING_RETRY_S = 5.0  # Retry-After of a 503 for a model still deploying (a failed one gets none)


class Gateway:
    """Routing table, handles and adapters of one ingress replica.

    Args:
        settings: MNEMOS settings.
        engram: the ENGRAM root (lineage is written there).
        controller: the ``relay-controller`` actor handle.
    """

    def __init__(self, settings: Settings, engram: Engram, controller: Any) -> None:
        self.settings = settings
        self.engram = engram
        self.controller = controller
        self.models: dict[str, ModelRoute] = {}
        self.adapters = AdapterRouter(settings)
        self.version = -1
        self.watcher = f"ingress-{uuid.uuid4().hex[:12]}"
        self._tasks: list[asyncio.Task[None]] = []
        self._lineage: Any = None
        self._records: list[tuple[float, str, Route, Any, dict[str, Any]]] = []
        self._model_nodes: set[str] = set()
        # One route per adapter-served name (not one a request: lineage holds a request's route until it
        # is written, and a new object each time kept the garbage collector busy); reset with the table.
        self._adapter_routes: dict[str, AdapterModelRoute] = {}
        self.meter = Meter(self)  # limits, budgets, usage and the response cache of this replica

    async def start(self) -> None:
        """Load the routing table, then follow it; start the lineage flusher."""
        self.apply(await self.controller.routes.remote())
        self._lineage = LineageWriter(self.engram)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow()), loop.create_task(self._flush_lineage())]
        await self.meter.governor.start()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.controller.forget_watcher.remote(self.watcher)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._write_lineage, self._take_records())
        with contextlib.suppress(Exception):  # usage settled in the last fraction of a second
            await self.meter.governor.aclose()
        await self.adapters.aclose()

    @property
    def ready(self) -> bool:
        return self.version >= 0

    def apply(self, table: dict[str, Any]) -> None:
        """Install a routing table from the controller (handles kept for unchanged applications)."""
        old = self.models
        self.models = {name: ModelRoute.build(entry, old.get(name)) for name, entry in table["models"].items()}
        self.adapters.update(table.get("adapters", {}))
        self._adapter_routes = {}
        self.version = int(table["version"])

    async def _follow(self) -> None:
        while True:
            try:
                table = await self.controller.watch_routes.remote(self.version, self.watcher, 30.0)
                self.apply(table)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the controller restarts; keep the last table meanwhile
                logger.warning("relay: routing table watch failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)

    async def _flush_lineage(self) -> None:
        while True:
            await asyncio.sleep(_LINEAGE_FLUSH_S)
            try:
                await asyncio.to_thread(self._write_lineage, self._take_records())
            except Exception:  # noqa: BLE001 - ENGRAM down: keep serving, retry next time
                logger.warning("relay: writing lineage failed", exc_info=True)

    def _take_records(self) -> list[tuple[float, str, Route, Any, dict[str, Any]]]:
        records, self._records = self._records, []
        return records

    def _write_lineage(self, records: list[tuple[float, str, Route, Any, dict[str, Any]]]) -> None:
        """Build the events of ``records`` (off the event loop) and write them with what is buffered."""
        for at, rid, route, principal, attrs in paced(records):  # the loop keeps the GIL meanwhile
            events = self._events(rid, route, principal, attrs)
            for ev in events:
                ev["ts"] = at
            self._lineage.extend(events)
        self._lineage.flush()

    # -- routing -------------------------------------------------------------------------------
    def model(self, name: str, kind: str) -> AnyRoute:
        """The route of model ``name``: a served Model's, or the Adapter's that forwards it.

        Raises:
            ModelNotFoundError: nothing serves ``name``.
            UnavailableError: the model is deploying, failed or scaled to zero.
            BadRequestError: text generation (``kind="generate"``) asked of an embedding model.
        """
        route = self.models.get(name)
        if route is None:
            adapter = self.adapters.adapter_for(name)
            if adapter is not None:
                known = self._adapter_routes.get(name)
                if known is None or known.adapter != adapter:
                    known = self._adapter_routes[name] = AdapterModelRoute(name, adapter)
                return known
            shown = name if len(name) <= 120 else f"{name[:120]}…"  # (a name is echoed, not a megabyte)
            raise ModelNotFoundError(f"The model `{shown}` does not exist", param="model")
        if not route.ready:
            # The reason, not the message: that one names artifacts and errors for operators, who
            # read it with `mnemos describe model` (a caller who may only infer sees the phase).
            status, reason = route.entry.get("status"), route.entry.get("reason")
            why = f" ({reason})" if reason else ""
            raise UnavailableError(f"model {name!r} is {status}{why}; `mnemos describe model {name}` says why "
                                   "(read-artifacts)", param="model",
                                   retry_after=None if status == "failed" else _DEPLOYING_RETRY_S)  # fmt: skip
        if kind == "generate" and route.kind == "embed":
            raise BadRequestError(f"model {name!r} is an embedding model; use /v1/embeddings", param="model")
        return route

    def listing(self) -> list[dict[str, Any]]:
        """``/v1/models`` entries: ready models, then adapter-served ones."""
        cards = [
            {
                "id": name,
                "object": "model",
                "created": route.entry.get("created", 0),
                "owned_by": "mnemos",
                "mnemos": {**{k: route.entry.get(k) for k in ("engine", "kind", "generation", "digest")},
                           "status": status_record(name, route.entry)},
            }
            for name, route in sorted(self.models.items())
            if route.ready
        ]
        cards += [
            {"id": model, "object": "model", "created": 0, "owned_by": adapter, "mnemos": {"adapter": adapter}}
            for model, adapter in sorted(self.adapters.models.items())
            if model not in self.models
        ]
        return cards

    def statuses(self) -> list[dict[str, Any]]:
        """The status record of every Model this gateway knows (ready or not), by name."""
        return [status_record(name, route.entry) for name, route in sorted(self.models.items())]

    # -- lineage -------------------------------------------------------------------------------
    def record(self, rid: str, route: Route, principal: Any, **attrs: Any) -> None:
        """Note request ``rid`` for lineage (its events are built and written every few seconds).

        Attributes are counts and names only: prompts and outputs never reach lineage. Token
        counts go under ``usage`` ({prompt, completion}).
        """
        if self._lineage is not None:
            self._records.append((time.time(), rid, route, principal, attrs))

    def _events(self, rid: str, route: Route, principal: Any, attrs: dict[str, Any]) -> list[dict[str, Any]]:
        """The lineage events of one request (the model node only the first time this replica sees it)."""
        if "prompt_tokens" in attrs or "completion_tokens" in attrs:
            attrs["usage"] = {"prompt": attrs.pop("prompt_tokens", 0), "completion": attrs.pop("completion_tokens", 0)}
        subject = getattr(principal, "subject", None)
        if principal is not None and hasattr(principal, "describe"):
            attrs["caller"] = principal.describe()
        if route.adapter is not None:  # lineage names the Adapter that answered
            attrs = {"adapter": route.adapter, **attrs}
        # The model node is the same for every request of a generation: written once per replica.
        node = model_node(route.name, route.generation)
        first = node not in self._model_nodes
        self._model_nodes.add(node)
        return request_event(rid, model=route.name, generation=route.generation, digest=route.digest,
                             principal=subject, with_model=first, **attrs)  # fmt: skip
