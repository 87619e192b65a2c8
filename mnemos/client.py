"""The notebook facade: ``client = mnemos.connect()``.

The client reads and writes GENOME resources in ENGRAM directly and, when connected to a Ray
cluster, publishes each change to the control plane so that controllers (the gateway, the
sync loop) react at once. Component APIs hang off it: ``client.jobs`` (CORTEX),
``client.pipelines`` and ``client.spaces`` (SYNKRON), ``client.lineage(id)`` (TRACE).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable
from typing import Any

from mnemos.config import Settings, default_home, load_settings
from mnemos.engram import Engram
from mnemos.errors import ConflictError, ValidationError
from mnemos.genome import ApplyResult, Registry, Resource, json_schema
from mnemos.genome.kinds import ResourceSource, resources_of
from mnemos.genome.registry import apply_each, event_of

__all__ = ["Client", "connect"]

ApplySource = ResourceSource
_JOINED: list[str] = []  # the Ray address connect() joined in this process ("": a new local cluster)
_HELD: dict[str, int] = {}  # ENGRAM root -> the fd of this process's lock on its embedded platform


def _generation(value: Any, param: str) -> int | None:
    """``value`` as a generation (an int, or ``None``): ``"1"`` was compared with ``1`` and refused as
    a conflict ("is generation 1, not generation 1"), ``"x"`` was a ``TypeError``."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValidationError(f"{param}: expected an int (the generation you read; 0: must not exist), got "
                          f"{type(value).__name__} {value!r}", param=param)  # fmt: skip


class Client:
    """Entry point to a MNEMOS platform.

    Args:
        settings: configuration (default: ``MNEMOS_*`` and ``mnemos.yaml``).
        connected: whether this process is connected to Ray with the control plane up.
    """

    def __init__(self, settings: Settings | None = None, *, connected: bool = False) -> None:
        self.settings = settings or load_settings()
        self.engram = Engram.from_settings(self.settings)
        self.registry = Registry(self.engram, require_gitops=self.settings.cradle.guardrails.require_gitops)
        self.connected = connected
        self._components: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Client(engram={self.engram.uri!r}, connected={self.connected})"

    # -- resources ---------------------------------------------------------------------------
    def apply(self, source: ApplySource, *, source_tag: str = "apply", expected_generation: int | None = None
              ) -> list[ApplyResult]:  # fmt: skip
        """Apply files, folders, documents or resources; each result says created/configured/unchanged.

        ``expected_generation``: the generation you read (0: must not exist); ``ConflictError``
        (409) when the resource moved on since.
        """
        _generation(expected_generation, "expected_generation")
        results: list[ApplyResult] = []
        try:  # one refused stops the rest; its error names those applied before it (apply_each)
            return apply_each(resources_of(source), lambda r: self.registry.apply(
                r, source=source_tag, expected_generation=expected_generation), results)  # fmt: skip
        finally:  # the controllers hear of what was applied, whatever stopped the rest
            self._publish([event_of(r.resource, r.action) for r in results if r.action != "unchanged"])

    def get(self, kind: str, name: str | None = None, *, generation: int | None = None) -> Any:
        """One resource (``name`` given) or the list of a kind."""
        if name is None:
            return self.registry.list(kind)
        return self.registry.get(kind, name, _generation(generation, "generation"))

    def delete(self, kind: str, name: str, *, source_tag: str = "apply", expected_generation: int | None = None
               ) -> Resource:  # fmt: skip
        expected_generation = _generation(expected_generation, "expected_generation")
        resource = self.registry.delete(kind, name, source=source_tag, expected_generation=expected_generation)
        self._publish([event_of(resource, "deleted")])
        return resource

    def history(self, kind: str, name: str) -> list[Resource]:
        return self.registry.history(kind, name)

    def model_status(self, name: str) -> dict[str, Any]:
        """Model ``name``'s observed status: phase, reason, message, replicas, served generation and
        digest, ``conditions`` and its recent ``events`` (``GET /apis/…/models/{name}/status``)."""
        from mnemos.relay.model_status import status_view

        self.registry.get("Model", name)  # NotFoundError for a Model that does not exist
        return status_view(self.engram, name)

    def register_model(self, folder: str | os.PathLike[str], name: str, *, engine: str | None = None,
                       family: str | None = None, version: str | None = None, params: dict[str, Any] | None = None,
                       labels: dict[str, str] | None = None, license: str | None = None,  # noqa: A002
                       ) -> ApplyResult:  # fmt: skip
        """Store a model folder (Hugging Face format) in ENGRAM and apply a Model pinned to its digest
        (``mnemos model register``); ref ``models/<name>`` names the newest upload. The Model is
        admitted before any byte is stored. ``params``: ``spec.runtime.params``. A Model of that
        name that exists keeps its spec but for the artifact, the version and what is given here
        (``params`` merged over its own); a new one runs on ``engine`` (default ``transformers``).
        ``license``: ``spec.policy.license`` (an SPDX id), which Policies may require."""
        from mnemos.neuron.models import register

        return register(self.engram, self.registry, os.fspath(folder), name, engine=engine, family=family,
                        version=version, params=params, labels=labels, license=license,
                        apply=lambda model: self.apply(model)[0])  # fmt: skip

    @staticmethod
    def validate(source: ApplySource) -> list[Resource]:
        """Parse and schema-check without storing anything."""
        return resources_of(source)

    def admit(self, source: ApplySource) -> list[Resource]:
        """Schema and admission checks, without storing anything (``mnemos validate``)."""
        resources = resources_of(source)
        for resource in resources:
            self.registry.admit(resource)
        return resources

    @staticmethod
    def schema(kind: str) -> dict[str, Any]:
        return json_schema(kind)

    def _publish(self, events: list[dict[str, Any]]) -> None:
        if events and self.connected:
            from mnemos.genome.service import publish_changes

            publish_changes(events)

    # -- component APIs (each imported on first use) ------------------------------------------
    @property
    def jobs(self) -> Any:
        """CORTEX jobs: ``client.jobs.submit(fn, *args, queue=, priority=, ...)``."""
        from mnemos.cortex import JobsAPI

        return self._api("jobs", JobsAPI)

    @property
    def pipelines(self) -> Any:
        """SYNKRON runs: ``client.pipelines.run("pipelines/x.yaml")``."""
        from mnemos.synkron import PipelinesAPI

        return self._api("pipelines", PipelinesAPI)

    @property
    def spaces(self) -> Any:
        """Embedding spaces: ``client.spaces.search(space, query, k)``."""
        from mnemos.synkron import SpacesAPI

        return self._api("spaces", SpacesAPI)

    def watch(self, types: Iterable[str] = (), *, subject: str | None = None, after: int | None = None,
              timeout: float | None = None) -> Any:
        """Platform events as they happen: ``for ev in client.watch(["job"], subject="job:j-1"): ...``.

        ``types``: families (``resource``, ``model``, ``job``, ``run``) or types (``job.log``);
        ``after``: resume after this event id; ``timeout``: stop after so many seconds.
        See ``mnemos.trace.events`` for the event shape; ``GET /v1/events`` serves the same over HTTP.
        """
        from mnemos.trace.events import watch

        return watch(types, subject=subject, after=after, timeout=timeout)

    def lineage(self, node_id: str) -> Any:
        """The lineage graph (upstream and downstream) of a run, job, request or artifact."""
        from mnemos.remote import _check_node_id
        from mnemos.synkron.spaces import LINEAGE_RESOLVERS
        from mnemos.trace.lineage import graph

        _check_node_id(node_id)
        return graph(self.engram, node_id, resolvers=LINEAGE_RESOLVERS)

    def _api(self, name: str, cls: Any) -> Any:
        key = f"api:{name}"
        if key not in self._components:
            self._components[key] = cls(self)
        return self._components[key]

    # -- platform ----------------------------------------------------------------------------
    def connect_ray(self) -> None:
        """Join Ray (the cluster ``mnemos up`` started, ``MNEMOS_RAY_ADDRESS``, or a new local one)."""
        from mnemos.cradle import init_ray

        init_ray(None, self.settings)

    def serve_models(self) -> None:
        """Make sure RELAY's controller runs, so registered Models get their Serve deployments
        (``client.pipelines.run`` calls it before a run with ``infer`` or ``index`` steps)."""
        from ray import serve

        from mnemos.relay import ensure_controller

        # Serve first, on the gateway's address: the controller deploys several models at once.
        serve.start(http_options={"host": self.settings.relay.host, "port": self.settings.relay.port})
        ensure_controller(self.settings, self.engram)

    def component(self, name: str) -> Any:
        """The handle of a control-plane component, started on first use."""
        if name not in self._components:
            from mnemos.cradle import up

            self._components.update(up(self.settings, self.engram, [name]))
        return self._components[name]

    def status(self) -> dict[str, Any]:
        """Cluster, control plane and registry at a glance."""
        counts: dict[str, int] = {}
        for resource in self.registry.list():
            kind = type(resource).__name__
            counts[kind] = counts.get(kind, 0) + 1
        out: dict[str, Any] = {"engram": self.engram.uri, "resources": counts, "connected": self.connected}
        if self.connected:
            import ray

            from mnemos.cradle import actor_states
            from mnemos.neuron.nodes import cluster_nodes

            out["ray"] = {
                "address": ray.get_runtime_context().gcs_address,
                "resources": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")},
            }
            out["nodes"] = cluster_nodes()
            out["control_plane"] = actor_states()
        return out


def connect(address: str | None = None, *, api_key: str | None = None, settings: Settings | None = None,
            **overrides: Any) -> Any:  # fmt: skip
    """Connect to MNEMOS: a remote platform over HTTP, or an embedded local Ray cluster.

    Args:
        address: ``http(s)://host:port`` — a gateway: returns a ``RemoteClient`` (no Ray, no ENGRAM
            access, no master key; see ``mnemos.remote``); or ``ray://host:10001`` / ``host:port`` —
            a Ray cluster this process joins as the local admin. Default: ``MNEMOS_URL`` (or the URL
            ``mnemos login URL`` stored) when no ``settings`` are given; with neither but a credential
            in the environment (``MNEMOS_API_KEY``, ``MNEMOS_TOKEN``), this machine's gateway
            (``http://<relay.host>:<relay.port>``); then ``MNEMOS_RAY_ADDRESS``, then the cluster
            ``mnemos up`` started, then a new cluster inside this process.
        api_key: the credential for a gateway (default: ``MNEMOS_API_KEY``, ``MNEMOS_TOKEN``, then
            what ``mnemos login`` stored).
        settings: configuration of the embedded mode; keyword ``overrides`` build one
            (``engram={"uri": ...}``).

    Raises:
        ConflictError: another process hosts an embedded platform on this ENGRAM (two would run the
            same jobs twice: share one, ``mnemos up``), or this process joined another Ray cluster
            (``ray.shutdown()`` first).
    """
    from mnemos.remote import RemoteClient, endpoint_url, implied_url, is_url

    if address is not None and not isinstance(address, str):
        raise ValidationError(f"address: expected a str (a gateway's http(s):// URL, or a Ray address such as "
                              f"'ray://host:10001'), got {type(address).__name__}", param="address")  # fmt: skip
    if is_url(address):
        if settings is not None or overrides:
            _settings_with_url(settings, overrides)
        return RemoteClient(str(address), api_key)
    if address is None and settings is None and not overrides:
        url = endpoint_url()
        if url:
            return RemoteClient(url, api_key)
        implied = implied_url()
        if implied is not None and api_key is None:  # a key in the environment is for a gateway: this machine's
            remote = RemoteClient(implied[0])
            remote._why = implied[1]
            return remote
    if api_key is not None:
        raise ValidationError("api_key is for a gateway: pass its http(s):// URL as the address (or set MNEMOS_URL)",
                              param="api_key")  # fmt: skip
    from mnemos.cradle import init_ray, resolve_address, up

    if address:
        _check_ray_address(address)
    settings = settings or load_settings(**overrides)
    target = resolve_address(address, settings)
    ray_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    if ray_up and _JOINED and address and address != "auto" and address != _JOINED[0]:
        raise ConflictError(f"address: this process is connected to {_JOINED[0] or 'a local Ray cluster of its own'} "
                            f"and cannot join {address} as well: call ray.shutdown() (or restart the kernel) first",
                            param="address")  # fmt: skip
    locked = target is None and not ray_up and _hold_embedded(settings)
    try:
        init_ray(address, settings)
    except ValueError as exc:  # Ray's "Invalid address format" (an address from MNEMOS_RAY_ADDRESS, ray.address)
        raise ValidationError(f"address: {target!r} is not a Ray address ({exc}): give 'host:port', "
                              "'ray://host:10001' or 'auto'", param="address") from None  # fmt: skip
    except BaseException:
        if locked:
            os.close(_HELD.pop(settings.engram.root()))
        raise
    if not ray_up:  # joined here (not by the caller's own ray.init): what a later address is checked against
        _JOINED[:] = [target or ""]
    client = Client(settings, connected=True)
    client._components.update(up(settings, client.engram, ["genome"]))
    return client


def _settings_with_url(settings: Settings | None, overrides: dict[str, Any]) -> None:
    """Refuse settings given with a gateway URL: they configure the embedded mode, and a gateway
    has its own (they were dropped without a word)."""
    param = "settings" if settings is not None else next(iter(overrides))
    raise ValidationError(f"{param}: settings are for the embedded mode; a gateway (an http(s):// address) uses its "
                          "own: connect(url, api_key=…) takes none", param=param)  # fmt: skip


def _check_ray_address(address: str) -> None:
    """A Ray address: ``host:port``, ``scheme://…`` (``ray://host:10001``), ``auto`` or ``local``
    (``"nonsense"`` was Ray's ``ValueError`` with its traceback)."""
    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not (sep and host and port.isdigit()):
        raise ValidationError(f"address: {address!r} is not a Ray address: give 'host:port' (the head's GCS), "
                              "'ray://host:10001', 'auto', or a gateway's http(s):// URL", param="address")  # fmt: skip


def _embedded_lock(settings: Settings) -> tuple[str, int] | None:
    """The ENGRAM root and an open fd of the lock file of an embedded platform on it (``None``: not POSIX)."""
    try:
        import fcntl  # noqa: F401 - only where flock exists
    except ImportError:  # not POSIX: no lock
        return None
    root = settings.engram.root()
    home = default_home()
    home.mkdir(parents=True, exist_ok=True)
    path = home / f"embedded-{hashlib.sha256(root.encode()).hexdigest()[:16]}.lock"
    return root, os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _holder(fd: int) -> str | None:
    """Take the lock of ``fd``: ``None`` when taken, else the pid its holder wrote (``"?"``: none yet)."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    return None


def embedded_holder(settings: Settings) -> str | None:
    """The pid of another process hosting an embedded platform on ``settings``' ENGRAM (a notebook's
    ``mnemos.connect()`` with no platform up), or ``None``: ``mnemos up`` refuses to start beside it."""
    lock = _embedded_lock(settings)
    if lock is None:
        return None
    root, fd = lock
    try:
        return None if root in _HELD else _holder(fd)
    finally:
        os.close(fd)  # closing releases a lock taken here


def _hold_embedded(settings: Settings) -> bool:
    """Lock the ENGRAM root this process is about to host an embedded platform on (a new local Ray
    cluster with its own CORTEX); whether a lock was taken now. Two such processes on one root
    each replayed the one journal: a job one of them was running was run again by the other.

    Raises:
        ConflictError: another process holds it.
    """
    lock = _embedded_lock(settings)
    if lock is None:
        return False
    root, fd = lock
    if root in _HELD:
        os.close(fd)
        return False
    holder = _holder(fd)
    if holder is not None:
        os.close(fd)
        raise ConflictError(
            f"engram: another process (pid {holder}) runs an embedded MNEMOS platform on {root}: two would run "
            "the same jobs twice. Share one platform: `mnemos up` (every mnemos.connect() then joins it), or "
            "give this process another MNEMOS_HOME", param="engram")  # fmt: skip
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD[root] = fd
    return True
