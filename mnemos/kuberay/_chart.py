"""The Helm chart's values (``deployments/helm/mnemos/values.yaml``) as a model, and its JSON schema.

The chart ships ``values.schema.json``, generated from :class:`ChartValues` by
``mnemos kuberay chart-schema``; Helm checks values against it on ``template``, ``install`` and
``lint``. Names, ports, replica counts and enums use the same rules as :mod:`mnemos.kuberay._values`
(the ``kuberay render`` values). What the chart hands to MNEMOS's settings (the ConfigMap ``-settings``)
carries the settings models' own schema (:mod:`mnemos.config`: ``soul.jwt`` is ``JwtSettings``,
``relay.rateLimit`` is ``RateLimit``, durations as ``Duration`` reads them …), so a value that would
stop every pod at startup fails the install instead. The root, ``relay``, ``soul``, a NEURON pool and
its ``settings`` refuse unknown keys (``relay.servce``, ``minReplica``); sections that keep the seed's
unused keys (``cortex``, ``neuron``, ``engram``, ``kuberay``, ``trace`` …) check the keys they list and
let others pass, and Helm's ``global`` (shared with subcharts) takes any key.

What JSON schema cannot say (``minReplicas <= maxReplicas``, unique pool names) is checked by
:class:`ChartValues` here and by the chart's ``mnemos.checkValues`` template, with the same messages.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from mnemos._model import POSITIVE_DURATION_PATTERN, CoreModel, Duration, PositiveDuration
from mnemos.config import (
    WRAITH_TASKS,
    Affinity,
    CronJob,
    EngramBackups,
    JwtSettings,
    PoolConfig,
    QueueConfig,
    RateLimit,
    RelaySettings,
    SoulPolicies,
    TraceSettings,
    VaultSettings,
)
from mnemos.genome._base import NAME_PATTERN
from mnemos.genome.adapter import AdapterSpec
from mnemos.kuberay._values import (
    CIDR,
    DNS_1035_LABEL,
    ENV_NAME,
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    KEY_PREFIX,
    LABEL_KEY,
    LABEL_VALUE,
    OBJECT_NAME,
    RAY_PORTS,
    REDIS_ADDRESS,
    S3_BUCKET,
    EnvName,
    LabelKey,
    Port,
    PullPolicy,
    Quantity,
    Resources,
    SecretKeyRef,
    ServiceType,
    Toleration,
    UpscalingMode,
)

__all__ = ["DURATION_PATTERN", "ChartValues", "PoolValues", "chart_schema", "chart_schema_json"]

Scalar = str | int | float | bool
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"
"""A ``Duration`` string as the settings read it (``0``, ``500ms``, ``1.5h``): never negative."""
_NAME_OR_DEFAULT = "^$|" + OBJECT_NAME
"""A Secret's or ServiceAccount's name, or '' for the chart's default: a name the API server would refuse in
a pod is refused here, not by KubeRay's operator after the install succeeded."""
_SELECTOR = {  # a nodeSelector: Helm names the path of a bad key ("additional properties … not allowed")
    "type": "object",
    "patternProperties": {LABEL_KEY: {"type": "string", "pattern": LABEL_VALUE}},
    "additionalProperties": False,
}
NodeSelector = Annotated[dict[LabelKey, Annotated[str, Field(pattern=LABEL_VALUE)]], WithJsonSchema(_SELECTOR)]
"""A nodeSelector: label keys and values the API server takes in a pod (KubeRay's pods are refused otherwise)."""
_ENV = {  # environment variables by name; Helm names the path of a bad name ("additional properties … not allowed")
    "type": "object",
    "patternProperties": {ENV_NAME: {"anyOf": [{"type": t} for t in ("string", "integer", "number", "boolean")]}},
    "additionalProperties": False,
}


class _Section(CoreModel):
    """A chart section: the keys listed are checked, any other key passes (seed keys, pass-through)."""

    model_config = ConfigDict(extra="allow")


class _PoolSettings(PoolConfig):
    """A pool's ``settings``: the NEURON pool config (``mnemos.config.PoolConfig``); name and selector
    come from the pool itself unless given here."""

    name: str | None = None  # type: ignore[assignment]


class PoolValues(CoreModel):
    """One NEURON pool (``neuron.pools[]``): a Ray worker group, or a KEDA-scaled Deployment."""

    name: str = Field(pattern=DNS_1035_LABEL, description="Pool and worker group name: a DNS-1035 label.")
    selector: NodeSelector | None = Field(default=None, description="nodeSelector; default neuron.nodeSelector.")
    replicas: int | None = Field(default=None, ge=0, description="Default: neuron.replicas.")
    min_replicas: int | None = Field(default=None, ge=0, description="Default: 0.")
    max_replicas: int | None = Field(default=None, ge=0, description="Default: replicas.")
    resources: Resources | None = None
    tolerations: list[Toleration] | None = None
    settings: _PoolSettings | None = Field(default=None, description="The NEURON pool config (workers per pool…).")
    keda: bool | None = Field(default=None, description="false: keep a KubeRay worker group under neuron.keda.")


class _ScaledObject(_Section):
    polling_interval: int | None = Field(default=None, ge=1)
    min_replica_count: int | None = Field(default=None, ge=0)
    max_replica_count: int | None = Field(default=None, ge=1)


class _Keda(_Section):
    enabled: bool | None = None
    workers_trigger: bool | None = None
    termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    scaled_object: _ScaledObject | None = None


class _Scratch(_Section):
    enabled: bool | None = None
    size: Quantity | None = None


class _EnvVar(CoreModel):
    """A container environment variable, as a pod spec lists it: ``{name: CUDA_VISIBLE_DEVICES, value: "0,1"}``."""

    name: str = Field(pattern=ENV_NAME)
    value: str = ""


class _Neuron(_Section):
    replicas: int | None = Field(default=None, ge=0, description="Replicas of a pool that sets none.")
    resources: Resources | None = Field(
        default=None, description="Over each GPU pool's own resources (the seed's NEURON GPU Optimization)."
    )
    env: list[_EnvVar] | None = Field(default=None, description="Environment of GPU pools' Ray workers.")
    node_selector: NodeSelector | None = None
    tolerations: list[Toleration] | None = None
    scratch: _Scratch | None = None
    keda: _Keda | None = None
    pools: list[PoolValues] | None = None

    @model_validator(mode="after")
    def _pools(self) -> _Neuron:
        """The chart's ``mnemos.checkValues``: unique names, and minReplicas <= maxReplicas in each worker group."""
        seen: dict[str, int] = {}
        keda = bool(self.keda and self.keda.enabled)
        for i, pool in enumerate(self.pools or []):
            if pool.name in seen:
                raise ValueError(f"neuron.pools[{i}].name: {pool.name!r} is also neuron.pools[{seen[pool.name]}].name; "
                                 "pool names must be unique: rename or remove one")  # fmt: skip
            seen[pool.name] = i
            if keda and pool.keda is not False:
                continue  # a KEDA-scaled pool: its ScaledObject's bounds (mnemos.kedaReplicas)
            replicas = pool.replicas if pool.replicas is not None else (self.replicas or 0)
            low = pool.min_replicas or 0
            high = pool.max_replicas if pool.max_replicas is not None else replicas
            if low > high:
                default = "" if pool.max_replicas is not None else " (default: replicas)"
                raise ValueError(f"neuron.pools[{i}].minReplicas: {low} is greater than maxReplicas {high}{default} "
                                 f"of pool {pool.name!r}; lower minReplicas or raise maxReplicas")  # fmt: skip
        return self


class _NetworkPolicy(_Section):
    enabled: bool | None = None
    egress_cidrs: list[Annotated[str, Field(pattern=CIDR)]] | None = Field(
        default=None, alias="egressCIDRs", description="Networks in CIDR notation (0.0.0.0/0, 10.0.0.0/8)."
    )
    egress_ports: list[Port] | None = None


class _PullSecret(CoreModel):
    """An image pull Secret, as a pod's ``imagePullSecrets`` lists it: ``{name: regcred}``."""

    name: str = Field(min_length=1)


class _PodSecurity(_Section):
    run_as_user: int | None = Field(default=None, ge=1, description="Not 0: the pods run as non-root.")
    run_as_group: int | None = Field(default=None, ge=0)
    fs_group: int | None = Field(default=None, ge=0)


class _Telemetry(_Section):
    otlp_endpoint: str | None = Field(default=None, description="OTLP endpoint; '': trace.otel.endpoint.")


class _Enabled(_Section):
    enabled: bool | None = None


class _Tls(_Section):
    enabled: bool | None = None
    issuer: str | None = Field(default=None, description="cert-manager ClusterIssuer of the Ingress's certificate.")


class _Rbac(_Section):
    create: bool | None = None


class _Global(_Section):
    """Helm's ``global`` (shared with subcharts): the keys listed are checked, any other passes."""

    registry: str | None = Field(default=None, pattern=IMAGE_REPOSITORY, description="Repository of the one image.")
    image_tag: str | None = Field(default=None, pattern=f"^(?:{IMAGE_TAG[1:-1]})?$", description="'': appVersion.")
    image_pull_policy: PullPolicy | None = None
    image_pull_secrets: list[_PullSecret] | None = None
    storage_class: str | None = None
    tls: _Tls | None = None
    rbac: _Rbac | None = None
    network_policy: _NetworkPolicy | None = None
    pod_security: _PodSecurity | None = None
    telemetry: _Telemetry | None = None


class _Autoscaling(_Section):
    enabled: bool | None = None
    idle_timeout_seconds: int | None = Field(default=None, ge=0)
    upscaling_mode: UpscalingMode | None = None
    resources: Resources | None = None


class _GcsFaultTolerance(_Section):
    enabled: bool | None = None
    redis_address: str | None = Field(default=None, pattern=REDIS_ADDRESS, description="host:port of the Redis.")
    password_secret: SecretKeyRef | None = None


class _Head(_Section):
    node_selector: NodeSelector | None = None
    tolerations: list[Toleration] | None = None
    ray_start_params: dict[str, Scalar] | None = None


class _RayJob(_Section):
    enabled: bool | None = None
    entrypoint: str | None = Field(default=None, pattern=r"\S", description="The command the job runs (not empty).")
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    backoff_limit: int | None = Field(default=None, ge=0)


class _ServiceAccount(_Section):
    create: bool | None = None
    name: str | None = Field(default=None, pattern=_NAME_OR_DEFAULT)
    annotations: dict[str, str] | None = None


class _KubeRay(_Section):
    ray_version: str | None = None
    ray_service: _Enabled | None = None
    ray_cluster: _Enabled | None = None
    service_account: _ServiceAccount | None = None
    metrics_port: Port | None = None
    env: Annotated[dict[EnvName, Scalar], WithJsonSchema(_ENV)] | None = None
    autoscaling: _Autoscaling | None = None
    gcs_fault_tolerance: _GcsFaultTolerance | None = None
    head: _Head | None = None
    ray_job: _RayJob | None = None


class _Service(CoreModel):
    type: ServiceType | None = None
    port: Port | None = None


INGRESS_HOST = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""An Ingress rule's host: a DNS name, lowercase, optionally ``*.`` first; no IP, port or scheme."""
_HOSTS_WHEN_ENABLED = {"if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
                       "then": {"required": ["hosts"]}}  # fmt: skip


class _Ingress(CoreModel):
    """An Ingress's hosts. Enabled, it needs at least one: ``hosts: null`` rendered a RELAY Ingress
    with no rule, and an empty host one the API server refuses (``tls.hosts: [""]``)."""

    model_config = ConfigDict(json_schema_extra=_HOSTS_WHEN_ENABLED)

    enabled: bool | None = None
    class_name: str | None = None
    hosts: list[Annotated[str, Field(pattern=INGRESS_HOST, max_length=253)]] | None = Field(
        default=None, min_length=1, description="DNS names (api.example.com, *.example.com)."
    )
    tls: bool | None = None


class _Queue(QueueConfig):
    """A CORTEX queue (``mnemos.config.QueueConfig``). Other keys pass: the seed's tuning example sets
    ``workers``, which the settings do not know."""

    model_config = ConfigDict(extra="allow")


class _Cortex(_Section):
    replicas: int | None = Field(default=None, ge=0)
    resources: Resources | None = Field(default=None, description="The Ray head's resources.")
    ingress: _Ingress | None = Field(default=None, description="Hosts whose /v1/jobs route to RELAY.")
    queues: dict[str, _Queue] | None = Field(default=None, description="CORTEX's queues (settings: cortex.queues).")
    affinity: Affinity | None = None


class _ChartAdapter(AdapterSpec):
    """One of ``relay.adapters``: an Adapter's ``spec`` and its ``name``, checked as GENOME checks it,
    so a literal credential (``auth: {apiKey: …}``, where only ``secretRef`` may be) fails the install
    naming its path, not the genome-apply Job after it."""

    name: str = Field(pattern=NAME_PATTERN, max_length=253, description="metadata.name of the Adapter.")


class _Relay(CoreModel):
    """RELAY: its Service and Ingress, and what its settings take (``relay.rateLimit`` is ``RateLimit``)."""

    high_throughput: bool | None = Field(
        default=None, description=RelaySettings.model_fields["high_throughput"].description
    )
    service: _Service | None = None
    ingress: _Ingress | None = None
    security: dict[str, Any] | None = Field(default=None, description="(seed; unused)")
    rate_limit: RateLimit | None = None
    adapters: list[_ChartAdapter] | None = Field(default=None, description="GENOME Adapter resources.")


class _ObjectStore(_Section):
    bucket: str | None = Field(default=None, pattern=S3_BUCKET, description="s3://bucket")
    spill_prefix: str | None = Field(default=None, pattern=KEY_PREFIX)
    credentials_secret: str | None = Field(default=None, pattern=_NAME_OR_DEFAULT)
    endpoint: str | None = None
    region: str | None = None
    retention_days: int | None = Field(default=None, ge=1, description="Settings: engram.retentionDays.")


class _Persistence(_Section):
    enabled: bool | None = None
    size: Quantity | None = None
    storage_class: str | None = None


class _Engram(_Section):
    uri: str | None = None
    object_store: _ObjectStore | None = None
    persistence: _Persistence | None = None
    backups: EngramBackups | None = None


class _MasterKeyExternalSecret(CoreModel):
    remote_ref: dict[str, Any] | None = Field(default=None, description="Where SOUL's store holds the key.")


class _MasterKey(CoreModel):
    source: Literal["existingSecret", "externalSecret", "generate", "none"] | None = None
    existing_secret: str | None = Field(default=None, pattern=_NAME_OR_DEFAULT)
    secret_key: str | None = None
    external_secret: _MasterKeyExternalSecret | None = None
    create: Any = Field(default=None, description="Replaced by `source`: the template says how.")


class _ExternalSecrets(CoreModel):
    enabled: bool | None = None
    secret_store_ref: dict[str, str] | None = None
    refresh_interval: str | None = None
    secrets: list[dict[str, Any]] | None = None


class _MTLSCA(CoreModel):
    """The CA that signs the Ray pods' certificates. Unknown keys are refused: a misspelt certManager would
    leave the pods waiting for a CA nobody makes."""

    existing_secret: str | None = Field(
        default=None, pattern=_NAME_OR_DEFAULT, description="The CA's Secret; '': <release>-mnemos-ray-ca."
    )
    cert_manager: bool | None = Field(default=None, description="cert-manager makes the CA (a self-signed root).")


class _Policies(CoreModel):
    m_tls: Literal["enabled", "disabled"] | None = Field(
        default=None, alias="mTLS", description="Mutual TLS between Ray processes (Ray's RAY_USE_TLS)."
    )
    token_ttl: Duration | None = Field(
        default=None, alias="tokenTTL", description=SoulPolicies.model_fields["token_ttl"].description
    )
    m_tls_ca: _MTLSCA | None = Field(default=None, alias="mTLSCA")


class _Soul(CoreModel):
    """SOUL: what its settings take (``vault``, ``jwt``, ``policies``), its master key and ExternalSecrets."""

    secret_store: Literal["engram", "vault", "env", "file"] | None = Field(
        default=None, description="Where secrets live: engram (every pod reads the same), vault, env, file (one pod)."
    )
    vault: VaultSettings | None = None
    jwt: JwtSettings | None = None
    policies: _Policies | None = None
    master_key: _MasterKey | None = None
    external_secrets: _ExternalSecrets | None = None


class _WraithQueues(CoreModel):
    concurrency: int | None = Field(default=None, ge=1, description="Settings: cortex.queues.wraith.concurrency.")


class _CronJob(CronJob):
    name: str = Field(description="The task.", json_schema_extra={"enum": list(WRAITH_TASKS)})
    image: str | None = Field(default=None, description="(seed; unused)")


class _Wraith(_Section):
    queues: _WraithQueues | None = None
    cronjobs: list[_CronJob] | None = None


class _Otel(_Section):
    endpoint: str | None = Field(default=None, description="Settings: trace.otlpEndpoint.")


class _MetricsCredentials(CoreModel):
    name: str | None = Field(
        default=None, pattern=_NAME_OR_DEFAULT, description="The Secret holding a viewer API key (mk_…)."
    )
    key: str | None = Field(default=None, description="The key inside that Secret; default api-key.")


class _Prometheus(_Section):
    scrape: bool | None = Field(default=None, description="prometheus.io/scrape annotations on the Ray pods.")


class _Metrics(_Section):
    prometheus: _Prometheus | None = None


class _Trace(_Section):
    dashboards: Literal["enabled", "disabled"] | bool | None = Field(
        default=None, description="Grafana dashboards, alert rules and the RELAY ServiceMonitor."
    )
    otel: _Otel | None = None
    metrics: _Metrics | None = None
    metrics_auth: bool | None = Field(default=None, description=TraceSettings.model_fields["metrics_auth"].description)
    metrics_credentials: _MetricsCredentials | None = Field(
        default=None, description="With metricsAuth: the viewer API key the RELAY ServiceMonitor sends."
    )


class _Guardrails(CoreModel):
    require_gitops: bool | None = Field(default=None, alias="require_gitops")


class _Cradle(_Section):
    guardrails: _Guardrails | None = None


class ChartValues(CoreModel):
    """The chart's values.yaml (after Helm merges the user's files and ``--set`` into it). An unknown
    top-level key is refused; ``genome`` and ``synkron`` are free-form (the seed's unused keys,
    GENOME documents)."""

    global_: _Global | None = Field(default=None, alias="global")
    kuberay: _KubeRay | None = None
    genome: _Section | None = None
    cortex: _Cortex | None = None
    neuron: _Neuron | None = None
    engram: _Engram | None = None
    wraith: _Wraith | None = None
    relay: _Relay | None = None
    soul: _Soul | None = None
    synkron: _Section | None = None
    trace: _Trace | None = None
    cradle: _Cradle | None = None

    @model_validator(mode="after")
    def _ports(self) -> ChartValues:
        """The chart's ``mnemos.checkValues``: RELAY's and the metrics port clash with no port of Ray's."""
        service = self.relay.service if self.relay else None
        serve = service.port if service and service.port is not None else 8080
        kuberay = self.kuberay
        metrics = kuberay.metrics_port if kuberay and kuberay.metrics_port is not None else 8090
        for name, port in (("relay.service.port", serve), ("kuberay.metricsPort", metrics)):
            if port in RAY_PORTS:
                raise ValueError(f"{name}: {port} is the port of {RAY_PORTS[port]} in every Ray pod; choose another "
                                 "(defaults: relay.service.port 8080, kuberay.metricsPort 8090)")  # fmt: skip
        if serve == metrics:
            raise ValueError(f"kuberay.metricsPort: {metrics} is also relay.service.port, where the Serve proxies "
                             "listen in every Ray pod; choose another (default 8090)")  # fmt: skip
        return self


class _HelmSchema(GenerateJsonSchema):
    """JSON schema as Helm reads it: no titles or defaults (Helm does not apply them), no ``null``.

    Helm drops a key set to null before it validates, so ``X | None`` means "may be left out".
    """

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> JsonSchemaValue:
        """A ``Duration`` as the settings read it: seconds (a number) or a string such as ``1h``."""
        function = schema["function"]["function"]
        if function not in _DURATION_PARSERS:
            return super().function_before_schema(schema)
        number = self.generate_inner(schema["schema"])
        positive = function is _DURATION_PARSERS[1] or "exclusiveMinimum" in number or number.get("minimum", 0) > 0
        if "minimum" not in number and "exclusiveMinimum" not in number:
            number["minimum"] = 0
        pattern = POSITIVE_DURATION_PATTERN if positive else DURATION_PATTERN
        return {"anyOf": [number, {"type": "string", "pattern": pattern}]}

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def generate(self, schema: Any, mode: Any = "validation") -> JsonSchemaValue:
        out = super().generate(schema, mode)
        _drop_titles(out)
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **out}


_DURATION_PARSERS = (get_args(Duration)[1].func, get_args(PositiveDuration)[1].func)


def _drop_titles(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("title"), str):
            del node["title"]
        for key, value in node.items():
            if key != "properties":
                _drop_titles(value)
            else:
                for prop in value.values():
                    _drop_titles(prop)
    elif isinstance(node, list):
        for item in node:
            _drop_titles(item)


def chart_schema() -> dict[str, Any]:
    """The chart's ``values.schema.json`` as a dict."""
    return ChartValues.model_json_schema(by_alias=True, schema_generator=_HelmSchema)


def chart_schema_json() -> str:
    """``values.schema.json`` as written to the chart (two-space indent, trailing newline)."""
    return json.dumps(chart_schema(), indent=2) + "\n"
