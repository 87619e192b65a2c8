"""MNEMOS settings: one ``Settings`` read from ``MNEMOS_*`` variables and an optional ``mnemos.yaml``.

Field names follow the seed's Helm values (``cortex.queues.default.concurrency``,
``relay.rateLimit.requestsPerSecond``, ``soul.jwt.rotateHours`` …). In YAML use camelCase as the
seed does; in the environment use ``MNEMOS_`` and ``__`` between levels, e.g.
``MNEMOS_CORTEX__QUEUES__DEFAULT__CONCURRENCY=50`` or ``MNEMOS_ENGRAM__URI=s3://bucket/root``.
The YAML file is ``$MNEMOS_CONFIG`` or ``./mnemos.yaml`` when it exists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from mnemos._model import CoreModel, Duration

__all__ = [
    "AdapterRoute",
    "Backoff",
    "CortexSettings",
    "CradleSettings",
    "ConsoleSettings",
    "CronJob",
    "EngramSettings",
    "NeuronSettings",
    "PROTOCOLS",
    "PoolConfig",
    "QueueConfig",
    "RelaySettings",
    "Settings",
    "SoulSettings",
    "TraceSettings",
    "WRAITH_TASKS",
    "WraithSettings",
    "default_home",
    "load_settings",
    "origin_of",
    "unsupported_protocol",
]


def default_home() -> Path:
    """``$MNEMOS_HOME`` or ``~/.mnemos``: local state (ENGRAM root, cluster address)."""
    return Path(os.environ.get("MNEMOS_HOME") or Path.home() / ".mnemos")


class Backoff(CoreModel):
    """Retry backoff: doubles from ``min`` up to ``max``."""

    min: Duration = Field(1.0, description="First retry delay.")
    max: Duration = Field(30.0, description="Largest retry delay.")


class QueueConfig(CoreModel):
    """One named CORTEX queue."""

    concurrency: int = Field(100, ge=1, description="Jobs of this queue running at once.")
    backoff: Backoff = Field(default_factory=Backoff)
    max_attempts: int = Field(3, ge=1, description="Default attempts per job.")
    timeout: Duration | None = Field(None, description="Default job timeout; none by default.")
    fairness: Literal["owner", "team", "fifo"] = Field(
        "owner",
        description="At equal priority: owner (the submitters of the waiting jobs take turns, each in submit order), "
        "team (their teams take turns: a team's keys share one turn; a job without a team takes its submitter's) "
        "or fifo (submit order, whoever submitted).",
    )


class Affinity(CoreModel):
    gpu_preferred: bool = Field(True, description="Jobs that can use either go to GPU pools first.")


class CortexSettings(CoreModel):
    replicas: int = 2
    queues: dict[str, QueueConfig] = Field(
        default_factory=lambda: {"default": QueueConfig(), "wraith": QueueConfig(concurrency=10)},
        description="Named queues; `default` and `wraith` always exist.",
    )
    affinity: Affinity = Field(default_factory=Affinity)
    journal_batch_ms: float = Field(5.0, ge=0, description="Group-commit window of the job journal.")
    inline_result_bytes: int = Field(64 * 1024, description="Results larger than this go to ENGRAM.")
    retention: Duration = Field(
        3600.0, ge=0, description="Finished jobs leave CORTEX's memory after this (they stay queryable from ENGRAM)."
    )
    checkpoint_records: int = Field(
        20_000, ge=100, description="Journal records between two checkpoints (snapshot of live jobs + tail)."
    )
    journal_timeout: Duration = Field(
        5.0, gt=0, description="How long a submit waits for its journal write before answering 503."
    )

    @field_validator("queues")
    @classmethod
    def _with_builtin_queues(cls, queues: dict[str, QueueConfig]) -> dict[str, QueueConfig]:
        """Declaring queues adds to ``default`` (where a job goes unless told) and ``wraith``
        (WRAITH's maintenance tasks), which settings may tune but not remove."""
        return {"default": QueueConfig(), "wraith": QueueConfig(concurrency=10), **queues}


class PoolConfig(CoreModel):
    """A NEURON pool: Ray actors grouped by capability."""

    name: str
    selector: dict[str, str] = Field(default_factory=dict)
    size: int = Field(2, ge=0, description="Workers in the pool (0: the pool is declared but empty).")
    min_workers: int | None = Field(None, ge=0, description="Fewest workers (default: size); 0 scales to zero.")
    max_workers: int | None = Field(None, ge=0, description="Most workers when the queue grows (default: size).")
    idle_timeout: Duration = Field(60.0, gt=0, description="A worker idle this long is stopped (above minWorkers).")
    num_cpus: float = Field(0.5, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    max_concurrency: int = Field(16, ge=1, description="Jobs one worker runs at once.")
    prefetch: int | None = Field(
        None, ge=0,
        description="While the pool's jobs are short (under 0.2 s on average), jobs sent to a worker beyond "
        "the ones it runs, so that a thread that ends one starts the next at once (0: off). Default: "
        "maxConcurrency, and while jobs run in milliseconds enough for 25 ms of work, up to 4 x maxConcurrency.",
    )  # fmt: skip
    await_capacity: bool = Field(
        False,
        description="The cluster grows nodes for this pool (KubeRay's autoscaler, KEDA): while it lacks them, jobs "
        "are still admitted and the pool's workers wait for a node, which Ray's autoscaler is asked for.",
    )

    @property
    def fewest(self) -> int:
        """``minWorkers``, or ``size`` when unset (a fixed-size pool)."""
        return self.size if self.min_workers is None else min(self.min_workers, self.most)

    @property
    def most(self) -> int:
        """``maxWorkers``, or the larger of ``size`` and ``minWorkers`` when unset."""
        return max(self.size, self.min_workers or 0) if self.max_workers is None else self.max_workers


def _default_pools() -> list[PoolConfig]:
    return [
        PoolConfig(name="cpu-a", selector={"accelerator": "cpu"}, size=2),
        PoolConfig(name="gpu-a", selector={"accelerator": "nvidia"}, size=1, num_cpus=0, num_gpus=1),
    ]


class NeuronSettings(CoreModel):
    replicas: int = 3
    pools: list[PoolConfig] = Field(default_factory=_default_pools)


# The WRAITH tasks a cron job may name (``mnemos.wraith.tasks.TASKS`` maps them to functions).
WRAITH_TASKS = ("compact-logs", "replay-events", "retention", "backup", "gitops-sync")
_CRON_HORIZON_YEARS = 5  # a schedule with no slot within this many years is refused


def _check_cron(schedule: str) -> str:
    """``schedule`` when it is a cron expression that fires within 5 years; else a pydantic error saying why."""
    from croniter import croniter

    fields = schedule.split()
    if croniter.is_valid(schedule) and len(fields) != 5 and not schedule.strip().startswith("@"):
        raise PydanticCustomError(
            "cron_fields", "{schedule} has {n} fields: use five (minute hour day-of-month month day-of-week), "
            "e.g. '0 3 * * *' (a sixth would be read as seconds: '0 3 * * * *' fires 60 times a night)",
            {"schedule": repr(schedule), "n": len(fields)},
        )  # fmt: skip
    if not croniter.is_valid(schedule):
        raise PydanticCustomError(
            "cron_schedule", "{schedule} is not a cron schedule: use five fields, e.g. '0 3 * * *'",
            {"schedule": repr(schedule)},
        )  # fmt: skip
    try:
        croniter(schedule, max_years_between_matches=_CRON_HORIZON_YEARS).get_next(float)
    except (ValueError, OverflowError):  # croniter's CroniterBadDateError: a date that never comes
        raise PydanticCustomError(
            "cron_never",
            "{schedule} never fires within {years} years (a date that does not exist, such as February 31st): "
            "give a date that exists, e.g. '0 0 28 2 *'",
            {"schedule": repr(schedule), "years": _CRON_HORIZON_YEARS},
        ) from None
    return schedule


PROTOCOLS = ("file", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")
"""The protocols an ENGRAM root or backup URI may use (besides a plain local path); any other is refused
before fsspec sees it: ``memory://`` is one process's, ``ftp://``, ``http://`` … are no object store."""


def unsupported_protocol(uri: str) -> str | None:
    """Why ``uri`` cannot be an ENGRAM root or backup URI (its protocol is not in ``PROTOCOLS``), without
    the user and password it may carry; ``None`` when it can."""
    if "://" not in uri:
        return None
    protocol = uri.split("://", 1)[0]
    if protocol in PROTOCOLS:
        return None
    plain = protocol.isascii() and protocol.replace("-", "").replace("+", "").replace(".", "").isalnum()
    shown = repr(protocol) if plain and len(protocol) <= 40 else "of this URI"  # never what a URI's user wrote
    return f"protocol {shown} is not supported: use a local folder, file://, s3:// or gs:// (gcsfs), az:// (adlfs)"


def _check_store_uri(uri: str | None) -> str | None:
    """``uri`` when ENGRAM can use its protocol (``PROTOCOLS``: a local path, file://, s3://, gs://, az://); else a
    pydantic error naming the supported ones (fsspec would try any other: ftp:// ended in a TypeError)."""
    if uri and (why := unsupported_protocol(uri)) is not None:
        raise PydanticCustomError("store_protocol", why)
    return uri


class EngramBackups(CoreModel):
    schedule: str = Field("0 */6 * * *", description="Cron schedule (UTC) of the `backup` task.")
    retention_days: int = Field(30, ge=1, description="Snapshots older than this are pruned (the newest stays).")
    destination: str | None = Field(None, description="Backup URI; default <engram root>/../backups.")

    _schedule = field_validator("schedule")(_check_cron)
    _destination = field_validator("destination")(_check_store_uri)


class EngramSettings(CoreModel):
    uri: str = Field("", description="ENGRAM root: a local path, file:// or s3:// URI.")
    retention_days: int = Field(30, ge=1)
    backups: EngramBackups = Field(default_factory=EngramBackups)
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options (endpoint_url…).")

    _uri = field_validator("uri")(_check_store_uri)

    def root(self) -> str:
        return self.uri or str(default_home() / "engram")


class RateLimit(CoreModel):
    requests_per_second: float = Field(50.0, gt=0)
    burst: int = Field(100, ge=1)


class AdapterRoute(CoreModel):
    match: str
    timeout: Duration = 60.0


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """The origin ``scheme://host[:port]`` of an ``http(s)`` URL, as browsers write it in ``Origin``:
    scheme and host in lower case, a default port left out (``https://Mnemos.example.com:443/ui`` →
    ``https://mnemos.example.com``).

    Raises:
        ValueError: not an ``http``/``https`` URL with a host (``null``, ``file:…``, ``//host``).
    """
    from urllib.parse import urlsplit

    parts = urlsplit(str(url).strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        raise ValueError(f"{str(url)[:200]!r} is not an http:// or https:// origin")
    port = parts.port  # ValueError when it is not a port number
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"  # an IPv6 address
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else "")


class ConsoleSettings(CoreModel):
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Exact origins (scheme://host[:port]) from whose pages the web console accepts form "
        "posts (sign-in, sign-out, cancel), e.g. the public https:// address of a TLS-terminating proxy; "
        "empty: a post's Origin (else Referer) must name the host it was sent to (Host).",
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        from urllib.parse import urlsplit

        out = []
        for origin in origins:
            parts = urlsplit(str(origin).strip())
            try:
                normal = origin_of(origin)
                if parts.path or parts.query or parts.fragment:
                    raise ValueError(f"{str(origin)[:200]!r} has a path, query or fragment")
                out.append(normal)
            except ValueError as exc:
                raise PydanticCustomError(
                    "origin",
                    "{error}: give an origin as scheme://host[:port], e.g. https://mnemos.example.com",
                    {"error": str(exc)},
                ) from None
        return out


class RelaySettings(CoreModel):
    host: str = "127.0.0.1"
    port: int = 8080
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    max_body_bytes: int = Field(1024 * 1024, description="Larger request bodies get 413.")
    max_file_bytes: int = Field(8 * 1024**3, ge=0, description="Larger uploads (PUT /v1/files/{digest}: a "
                                "pipeline's files, a model folder's) get 413; an upload is spooled to the "
                                "gateway's temporary folder, so it needs that much disk there, not memory.")
    max_event_streams: int = Field(32, ge=1, description="Open /v1/events streams per principal on each "
                                   "gateway replica; one more gets 429 (each costs the replica work per event).")
    max_event_streams_total: int = Field(128, ge=1, description="Open /v1/events streams of all callers on each "
                                         "gateway replica; one more gets 503. Each holds one of the replica's 256 "
                                         "concurrent requests: below that, a few keys' streams cannot take every "
                                         "place chat and the API need.")
    auth: bool = Field(True, description="Require a token or API key on every route but health.")
    redact_prompts: bool = Field(False, description="Redact PII from every prompt the gateway forwards (every "
                                 "Model and Adapter), not only for models whose policy says pii: redact.")
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    adapter_env_allowlist: list[str] = Field(
        default_factory=list,
        description="Environment variables an Adapter's auth.secretRef.key may read when SOUL's secret store "
        "lacks the secret (an admin's allowlist; empty: adapters read SOUL's secret store only).",
    )
    access_log: bool = Field(
        False,
        description="Serve's access log line for each gateway request (method, route, status, latency) in the "
        "gateway replicas' log files. Off by default: lineage and /metrics record every request already, and "
        "the line costs the replica about 25 µs of CPU a request.",
    )
    high_throughput: bool = Field(
        True,
        description="Run Serve in its high-throughput mode (HAProxy ingress, gRPC between replicas): sets "
        "RAY_SERVE_ENABLE_HA_PROXY=1 and RAY_SERVE_THROUGHPUT_OPTIMIZED=1 for the cluster `mnemos up` starts.",
    )


class JwtSettings(CoreModel):
    issuer: str = "soul.mnemos"
    rotate_hours: float = 24.0


class SoulPolicies(CoreModel):
    m_tls: Literal["enabled", "disabled"] = Field(
        "enabled", alias="mTLS", description="Mutual TLS between Ray processes (set up by the Helm chart's Ray pods)."
    )
    token_ttl: Duration = Field(3600.0, alias="tokenTTL", description="Lifetime of issued JWTs (seed: 1h).")
    max_token_ttl: Duration = Field(
        86400.0, alias="maxTokenTTL", gt=0,
        description="Longest lifetime a JWT minted over HTTP may ask for (ttl above it: 422).",
    )


class VaultSettings(CoreModel):
    address: str = "https://vault.mnemos.svc:8200"
    mount: str = "mnemos/"


class SoulSettings(CoreModel):
    vault: VaultSettings = Field(default_factory=VaultSettings)
    jwt: JwtSettings = Field(default_factory=JwtSettings)
    policies: SoulPolicies = Field(default_factory=SoulPolicies)
    secret_store: str = Field(
        "file", description="file (this machine's folder), engram (shared by every node: more than one), env or vault."
    )


class TraceSettings(CoreModel):
    otlp_endpoint: str = Field("", description="OTLP endpoint; empty: spans are not exported.")
    service_name: str = "mnemos"
    metrics_auth: bool = Field(
        False, description="Require a credential (verb read-lineage) on /metrics; off: Prometheus scrapes freely."
    )


class SynkronSettings(CoreModel):
    max_active_runs: int = Field(
        32, ge=0, description="Runs one authenticated caller may have going at once (each is a thread of the "
        "runner); one more is a 429 naming this setting. 0: no limit.",
    )
    allow_host_execution: bool = Field(
        False,
        description="Run a step that names an image on the worker's own environment when the node has no "
        "container runtime (off: such a step is refused).",
    )


class CronJob(CoreModel):
    """One WRAITH task on a cron schedule (UTC)."""

    name: str = Field(description="The task: " + ", ".join(WRAITH_TASKS) + ".")
    schedule: str = Field(description="Cron schedule (UTC), e.g. '0 3 * * *'.")
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _known_task(cls, name: str) -> str:
        if name not in WRAITH_TASKS:
            raise PydanticCustomError(
                "wraith_task", "unknown WRAITH task {name}: valid tasks are {valid}",
                {"name": repr(name), "valid": ", ".join(WRAITH_TASKS)},
            )  # fmt: skip
        return name

    _schedule = field_validator("schedule")(_check_cron)


def _default_cronjobs() -> list[CronJob]:
    return [
        CronJob(name="compact-logs", schedule="0 3 * * *"),
        CronJob(name="replay-events", schedule="*/15 * * * *"),
        CronJob(name="retention", schedule="30 3 * * *"),
    ]  # `backup` runs on engram.backups.schedule unless a `backup` entry is declared here


class GitOpsSettings(CoreModel):
    repo: str | None = Field(None, description="Git URL or local path; none: WRAITH does not sync.")
    path: str = Field("environments/dev", description="Folder of the repository to apply.")
    ref: str = "main"
    prune: bool = False
    interval: Duration = 300.0


class WraithSettings(CoreModel):
    cronjobs: list[CronJob] = Field(default_factory=_default_cronjobs, description="One entry per task at most.")
    gitops: GitOpsSettings = Field(default_factory=GitOpsSettings)

    @field_validator("cronjobs")
    @classmethod
    def _one_entry_per_task(cls, cronjobs: list[CronJob]) -> list[CronJob]:
        seen: dict[str, int] = {}
        for i, job in enumerate(cronjobs):
            if job.name in seen:
                raise PydanticCustomError(
                    "wraith_duplicate", "entries {first} and {second} both name the task {name}: keep one",
                    {"first": seen[job.name], "second": i, "name": repr(job.name)},
                )  # fmt: skip
            seen[job.name] = i
        return cronjobs


class Guardrails(CoreModel):
    require_gitops: bool = False


class CradleSettings(CoreModel):
    guardrails: Guardrails = Field(default_factory=Guardrails)


class RaySettings(CoreModel):
    address: str | None = Field(None, description="ray://… or host:port; none: embedded local cluster.")
    namespace: str = "mnemos"
    num_cpus: int = Field(8, description="Logical CPUs of the embedded cluster (Serve replicas need room).")
    dashboard_port: int = Field(8265, description="Dashboard / job-submission port of the cluster `mnemos up` starts.")
    spill_uri: str | None = Field(
        None,
        description="Where the cluster `mnemos up` starts spills Ray objects: s3://bucket/prefix or a folder. "
        "Default: s3://<ENGRAM's bucket>/spill when ENGRAM is on S3 (as on KubeRay), Ray's temp folder otherwise.",
    )

    def spill_target(self, engram: EngramSettings) -> str | None:
        """The spill URI in effect (None: Ray's own default)."""
        if self.spill_uri:
            return self.spill_uri
        root = engram.root()
        return f"s3://{root[5:].split('/', 1)[0]}/spill" if root.startswith("s3://") else None


class Settings(BaseSettings):
    """Everything configurable, with the seed's defaults."""

    model_config = SettingsConfigDict(
        env_prefix="MNEMOS_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
        alias_generator=None,
    )

    ray: RaySettings = Field(default_factory=RaySettings)
    engram: EngramSettings = Field(default_factory=EngramSettings)
    cortex: CortexSettings = Field(default_factory=CortexSettings)
    neuron: NeuronSettings = Field(default_factory=NeuronSettings)
    relay: RelaySettings = Field(default_factory=RelaySettings)
    soul: SoulSettings = Field(default_factory=SoulSettings)
    trace: TraceSettings = Field(default_factory=TraceSettings)
    synkron: SynkronSettings = Field(default_factory=SynkronSettings)
    wraith: WraithSettings = Field(default_factory=WraithSettings)
    cradle: CradleSettings = Field(default_factory=CradleSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get("MNEMOS_CONFIG") or "mnemos.yaml"
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if Path(path).is_file():
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def undeclared_queue(name: str, declared: Iterable[str]) -> Exception:
    """The error for a queue nobody declared (422 naming ``queue``): the declared ones, and the fix."""
    from mnemos.errors import ValidationError

    return ValidationError(
        f"queue: {name[:80]!r} is not declared; declared queues: {', '.join(sorted(declared))}. "
        "Name one of them, or have an operator declare it under cortex.queues (mnemos.yaml, Helm values)",
        param="queue",
    )


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning a bad value into a ``ValidationError`` that names the field."""
    from pydantic import ValidationError as PydanticValidationError
    from pydantic_settings import SettingsError

    from mnemos._model import to_validation_error
    from mnemos.errors import ValidationError

    try:
        return Settings(**overrides)
    except PydanticValidationError as exc:
        raise to_validation_error(exc, prefix="settings") from None
    except SettingsError:  # a structured variable (list, mapping) that is not JSON
        names = _unparsable_variables()
        what = " or ".join(names) if names else "a MNEMOS_* variable"
        raise ValidationError(
            f"{what} is not valid JSON: give a JSON list or object, e.g. "
            """MNEMOS_WRAITH__CRONJOBS='[{"name": "backup", "schedule": "0 */6 * * *"}]'""",
            param=names[0] if names else "settings",
        ) from None


def _unparsable_variables() -> list[str]:
    """The ``MNEMOS_*`` variables of list, mapping or model fields whose value is not JSON."""
    import json

    from pydantic import BaseModel

    out = []
    for key, value in os.environ.items():
        if not key.upper().startswith("MNEMOS_"):
            continue
        annotation: Any = Settings
        for part in key[len("MNEMOS_") :].lower().split("__"):
            is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
            fields = annotation.model_fields if is_model else {}
            match = [f for n, f in fields.items() if part in (n, n.replace("_", ""), (f.alias or "").lower())]
            annotation = match[0].annotation if match else None
        structured = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if annotation is not None and (structured or getattr(annotation, "__origin__", None) in (list, dict)):
            try:
                json.loads(value)
            except ValueError:
                out.append(key)
    return sorted(out)
