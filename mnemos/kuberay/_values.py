"""Typed values for the KubeRay manifests, with the seed's Helm defaults.

Every field is camelCase in YAML (``workerGroups``, ``nodeSelector``) and snake_case in Python,
as in the rest of MNEMOS; a misspelled key is an error naming its path (``extra="forbid"``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from mnemos._model import CoreModel
from mnemos._version import __version__
from mnemos.errors import NotFoundError

__all__ = [
    "AutoscalingValues",
    "DNS_1035_LABEL",
    "ENV_NAME",
    "EnvName",
    "GcsFaultToleranceValues",
    "HeadValues",
    "IMAGE_REPOSITORY",
    "IMAGE_TAG",
    "ImageValues",
    "JobValues",
    "KEY_PREFIX",
    "KubeRayValues",
    "LABEL_KEY",
    "LABEL_VALUE",
    "LabelKey",
    "LabelValue",
    "OBJECT_NAME",
    "ObjectName",
    "Port",
    "PullPolicy",
    "QUANTITY",
    "RAY_PORTS",
    "Quantity",
    "Resources",
    "S3_BUCKET",
    "SecretKeyRef",
    "SecurityValues",
    "ServeValues",
    "ServiceType",
    "StorageValues",
    "Text",
    "TlsValues",
    "Toleration",
    "UpscalingMode",
    "WorkerGroupValues",
]

# Rules shared with the Helm chart's values model (_chart.py), whose JSON schema the chart ships.
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
"""A DNS-1035 label: what a worker group / NEURON pool name must be."""
S3_BUCKET = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"
KEY_PREFIX = r"^[A-Za-z0-9][A-Za-z0-9._/\-]*$"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REPOSITORY = (
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
    rf"{_PATH_PART}(?:/{_PATH_PART})*$"
)
"""An image repository as the OCI distribution spec names one: ``[host[:port]/]path``, lowercase."""
IMAGE_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
"""An image tag (the OCI distribution spec): up to 128 letters, digits, '_', '.', '-'."""
REDIS_ADDRESS = r"^(rediss?://)?[^\s:/]+:[0-9]{1,5}$"
"""Where the GCS's Redis listens: ``host:port`` (``redis://`` or ``rediss://`` before it); the port is
required, the chart's NetworkPolicy opens it."""
CIDR = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$|^[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*/[0-9]{1,3}$"
"""An IPv4 or IPv6 network in CIDR notation (``10.0.0.0/8``, ``fd00::/8``), as a NetworkPolicy's ipBlock takes."""
OBJECT_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
"""A DNS-1123 subdomain: the name of a Secret or a ServiceAccount. The API server accepts a Ray object
that names another one, and then refuses every pod the operator makes from it."""
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
"""A container environment variable's name, as the API server checks it in a pod."""
SECRET_KEY = r"^[-._a-zA-Z0-9]{1,253}$"
"""A key inside a Secret."""
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"  # an optional DNS prefix
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
"""A label key (a node selector's): ``[prefix/]name``, the name up to 63 characters."""
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
"""A label value: up to 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit."""
RAY_PORTS = {6379: "Ray's GCS", 8265: "Ray's dashboard", 10001: "Ray's client server", 52365: "Ray's dashboard agent"}
"""Ports Ray itself listens on in every Ray pod (a head's; a worker's agent): Serve's proxies, on
RELAY's port, could not bind one of them, and the RayService would never become ready."""
_DNS_LABEL = re.compile(DNS_1035_LABEL)

PullPolicy = Literal["Always", "IfNotPresent", "Never"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
UpscalingMode = Literal["Default", "Aggressive", "Conservative"]
Port = Annotated[int, Field(ge=1, le=65535)]
"""A TCP port, 1-65535."""


QUANTITY = r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
"""A Kubernetes quantity that is not negative (the pattern of the CRDs' resources, without the sign)."""


def _quantity_str(value: Any) -> Any:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _quantity(value: str) -> str:
    if not re.fullmatch(QUANTITY, value):
        raise ValueError(f"{value[:100]!r} is not a Kubernetes quantity such as 500m, 2, 4Gi or 50Gi")
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity_str),
    AfterValidator(_quantity),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": QUANTITY}, {"type": "number", "minimum": 0}]}),
]
"""A Kubernetes quantity (``"500m"``, ``"4Gi"``, ``1``); numbers are kept as strings."""


def _scalar_str(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, (int, float)) else value


Text = Annotated[str, BeforeValidator(_scalar_str, json_schema_input_type=str | int | float | bool)]
"""A string in a map that Kubernetes or Ray reads as text (env, labels, node selectors, ``ray start``
flags): YAML's ``num-cpus: 0`` or ``gpu: true`` (and ``--set env.X=1``) are kept as ``"0"``, ``"true"``."""


def _matching(pattern: str, what: str) -> Callable[[str], str]:
    """A validator of text that must match ``pattern``: else "'<value>' is not <what>"."""

    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{value[:300]!r} is not {what}")
        return value

    return check


ObjectName = Annotated[str, AfterValidator(_matching(OBJECT_NAME, (
    "a Kubernetes object name: up to 253 lowercase letters, digits, '-' and '.', starting and ending with a "
    "letter or digit (e.g. mnemos-s3)"))), WithJsonSchema({"type": "string", "pattern": OBJECT_NAME})]  # fmt: skip
"""The name of a Secret or ServiceAccount the pods refer to."""
EnvName = Annotated[str, AfterValidator(_matching(ENV_NAME, (
    "an environment variable name: letters, digits, '_', '-' and '.', not starting with a digit "
    "(e.g. FORWARDED_ALLOW_IPS)"))), WithJsonSchema({"type": "string", "pattern": ENV_NAME})]  # fmt: skip
"""The name of a container environment variable."""
LabelKey = Annotated[str, AfterValidator(_matching(LABEL_KEY, (
    "a label key: [prefix/]name, the name up to 63 letters, digits, '-', '_' and '.' (e.g. accelerator, "
    "node.kubernetes.io/instance-type)"))), WithJsonSchema({"type": "string", "pattern": LABEL_KEY})]  # fmt: skip
"""A label key, as a node selector (or an object's labels) takes it."""
LabelValue = Annotated[Text, AfterValidator(_matching(LABEL_VALUE, (
    "a label value: up to 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit")))]
"""A label value; numbers and booleans are kept as text (``gpu: true`` gives ``"true"``)."""


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a DNS-1035 label: lowercase letters, digits and '-', starting with a letter"
        )
    return value


class Resources(CoreModel):
    """Container requests and limits (Kubernetes quantities: ``"500m"``, ``"4Gi"``, ``"1"``)."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class Toleration(CoreModel):
    """A pod toleration (``nvidia.com/gpu`` ``Exists`` ``NoSchedule`` for GPU nodes)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, description="How long a NoExecute taint is tolerated.")


class SecretKeyRef(CoreModel):
    """One key of a Kubernetes Secret."""

    name: ObjectName
    key: str = Field(pattern=SECRET_KEY)


class ImageValues(CoreModel):
    """The one MNEMOS image: Ray + the ``mnemos`` package (see the repository's Dockerfile)."""

    repository: str = Field(default="ghcr.io/n1x-mnemos/mnemos", description="Image repository.")
    tag: str = Field(default=__version__, description="Image tag; defaults to the mnemos version.")
    pull_policy: PullPolicy = "IfNotPresent"

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not re.fullmatch(IMAGE_REPOSITORY, value):
            raise ValueError(f"{value[:200]!r} is not an image repository: [host[:port]/]path, the path in lowercase "
                             "letters, digits and '.', '_', '-' between them, e.g. ghcr.io/org/mnemos")  # fmt: skip
        return value

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not re.fullmatch(IMAGE_TAG, value):
            raise ValueError(f"{value[:200]!r} is not an image tag: 1 to 128 letters, digits, '_', '.' and '-', "
                             "not starting with '.' or '-' (e.g. 0.1.0)")  # fmt: skip
        return value

    @property
    def ref(self) -> str:
        """``repository:tag``."""
        return f"{self.repository}:{self.tag}"


def _cortex_resources() -> Resources:
    # The seed's cortex.resources: the head runs the control-plane actors (CORTEX, WRAITH, Serve).
    return Resources(requests={"cpu": "500m", "memory": "1Gi"}, limits={"cpu": "2", "memory": "4Gi"})


class HeadValues(CoreModel):
    """The Ray head pod: GCS, dashboard, Serve controller and the control-plane actors."""

    resources: Resources = Field(default_factory=_cortex_resources)
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    ray_start_params: dict[str, Text] = Field(default_factory=dict, description="Extra `ray start` flags.")
    service_type: ServiceType = "ClusterIP"


class WorkerGroupValues(CoreModel):
    """A Ray worker group backing one NEURON pool (``cpu-a``, ``gpu-a``)."""

    name: str = Field(description="Group name, also the NEURON pool name.")
    replicas: int = Field(default=1, ge=0)
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=10, ge=0)
    resources: Resources = Field(default_factory=Resources)
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    ray_start_params: dict[str, Text] = Field(default_factory=dict, description="Extra `ray start` flags.")
    labels: dict[str, Text] = Field(default_factory=dict, description="Extra Ray node labels.")
    scratch: bool = Field(default=True, description="Mount a scratch volume of storage.scratchSize at /scratch.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label(value)

    @model_validator(mode="after")
    def _replica_bounds(self) -> WorkerGroupValues:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) is greater than maxReplicas ({self.max_replicas})")
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) must lie between minReplicas ({self.min_replicas}) "
                f"and maxReplicas ({self.max_replicas})"
            )
        return self

    @property
    def gpus(self) -> int:
        """GPUs per pod, from ``nvidia.com/gpu`` in the limits."""
        return int(float(self.resources.limits.get("nvidia.com/gpu", "0")))


def _default_worker_groups() -> list[WorkerGroupValues]:
    # NEURON pools of the seed: cpu-a on `accelerator: cpu` nodes, gpu-a on `accelerator: nvidia` nodes;
    # gpu-a's resources are the seed's neuron-llm HelmRelease, its maximum the seed's neuron.replicas.
    return [
        WorkerGroupValues(
            name="cpu-a",
            replicas=2,
            min_replicas=1,
            max_replicas=10,
            resources=Resources(requests={"cpu": "2", "memory": "4Gi"}, limits={"cpu": "4", "memory": "8Gi"}),
            node_selector={"accelerator": "cpu"},
        ),
        WorkerGroupValues(
            name="gpu-a",
            replicas=1,
            min_replicas=0,
            max_replicas=3,
            resources=Resources(
                requests={"cpu": "4", "memory": "16Gi"},
                limits={"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
            ),
            node_selector={"accelerator": "nvidia"},
            tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        ),
    ]


class AutoscalingValues(CoreModel):
    """KubeRay's in-tree autoscaler (a sidecar of the head pod)."""

    enabled: bool = True
    idle_timeout_seconds: int = Field(default=60, ge=0, description="Idle seconds before a worker is removed.")
    upscaling_mode: UpscalingMode = "Default"
    resources: Resources = Field(
        default_factory=lambda: Resources(
            requests={"cpu": "200m", "memory": "256Mi"}, limits={"cpu": "500m", "memory": "512Mi"}
        )
    )


class GcsFaultToleranceValues(CoreModel):
    """GCS fault tolerance: the head's state lives in Redis and survives a head restart."""

    enabled: bool = True
    redis_address: str = Field(
        default="mnemos-redis:6379", pattern=REDIS_ADDRESS, description="host:port of the Redis the GCS writes to."
    )
    password_secret: SecretKeyRef | None = Field(
        default_factory=lambda: SecretKeyRef(name="mnemos-redis", key="password"),
        description="Secret holding the Redis password; none for a Redis without one.",
    )
    external_storage_namespace: str | None = Field(
        default=None, description="Redis key prefix; default: the cluster UID."
    )


class StorageValues(CoreModel):
    """S3 for ENGRAM and object spilling; a storage class for scratch volumes."""

    bucket: str = Field(default="s3://mnemos-artifacts", description="The seed's engram.objectStore.bucket.")
    engram_prefix: str = Field(default="engram", description="ENGRAM root under the bucket.")
    spill_prefix: str = Field(default="spill", description="Ray object spilling under the bucket.")
    credentials_secret: ObjectName | None = Field(
        default="mnemos-s3",
        description="Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (optional: IRSA works too).",
    )
    endpoint_url: str | None = Field(default=None, description="S3 endpoint for non-AWS stores (MinIO, Ceph).")
    region: str | None = None
    storage_class: str = Field(default="fast-zfs", description="The seed's global.storageClass.")
    scratch_size: Quantity = Field(default="50Gi", description="Scratch volume per worker (model cache).")

    @field_validator("bucket")
    @classmethod
    def _s3_bucket(cls, value: str) -> str:
        if not re.fullmatch(S3_BUCKET, value):
            raise ValueError(f"{value!r} is not an S3 bucket URI such as s3://mnemos-artifacts")
        return value

    @field_validator("engram_prefix", "spill_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(KEY_PREFIX, value) or ".." in value:
            raise ValueError(f"{value!r} is not a valid key prefix")
        return value.rstrip("/")

    @property
    def engram_uri(self) -> str:
        return f"{self.bucket}/{self.engram_prefix}"

    @property
    def spill_uri(self) -> str:
        return f"{self.bucket}/{self.spill_prefix}"


class ServeValues(CoreModel):
    """The RELAY Serve application (the same one as ``deployments/serve/mnemos.yaml``)."""

    app_name: str = "mnemos"
    route_prefix: str = Field(default="/", pattern=r"^/", description="Serve's route_prefix: starts with '/'.")
    import_path: str = "mnemos.relay:build_app"
    args: dict[str, Any] = Field(default_factory=lambda: {"engram_uri": ""})
    proxy_location: Literal["EveryNode", "HeadOnly", "Disabled"] = "EveryNode"
    host: str = Field(default="0.0.0.0", description="In-cluster HTTP host of the Serve proxies.")
    port: Port = Field(default=8080, description="The seed's relay.service.port.")
    high_throughput: bool = Field(
        default=True, description="Serve's high-throughput mode (HAProxy ingress, gRPC between replicas) on every "
        "Ray container: RAY_SERVE_ENABLE_HA_PROXY=1, RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (relay.highThroughput), "
        "with HAProxy started through MNEMOS's wrapper, which the init container `haproxy` writes.",
    )
    service_type: ServiceType = Field(
        default="ClusterIP", description="Type of RELAY's Service <name>-relay (the seed's relay.service.type)."
    )


class JobValues(CoreModel):
    """The RayJob: one pipeline run on a cluster of its own."""

    entrypoint: str = Field(default="python -m mnemos run pipelines/text-gen-artifacts.yaml",
                            json_schema_extra={"pattern": r"\S"},
                            description="The command the job runs (not empty: KubeRay would submit nothing).")
    working_dir: str | None = Field(default="/home/ray/mnemos", description="Image folder holding pipelines/.")
    shutdown_after_job_finishes: bool = True
    ttl_seconds_after_finished: int = Field(default=600, ge=0)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    backoff_limit: int = Field(default=0, ge=0)

    @field_validator("entrypoint")
    @classmethod
    def _command(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty: give the command the job runs, e.g. python -m mnemos run pipelines/my.yaml")
        return value


class SecurityValues(CoreModel):
    """The restricted pod security context (the rayproject images run as uid 1000, gid 100), and
    the Secret that gives every Ray container the same SOUL master key."""

    run_as_user: int = Field(default=1000, ge=1, description="Not 0: the pods run as non-root.")
    run_as_group: int = Field(default=100, ge=0)
    fs_group: int = Field(default=100, ge=0)
    master_key_secret: ObjectName | None = Field(
        default="mnemos-master-key",
        description="Secret whose key `masterKeySecretKey` every Ray container gets as MNEMOS_MASTER_KEY "
        "(null: none, so each pod makes its own key, which only a one-pod cluster can live with).",
    )
    master_key_secret_key: str = Field(
        default="master-key", pattern=SECRET_KEY, description="The key inside that Secret."
    )


class TlsValues(CoreModel):
    """Mutual TLS between Ray processes (the seed's ``soul.policies.mTLS``, as the Helm chart renders it).

    Each Ray pod's init container ``ray-tls`` signs a certificate for the pod's IP with the CA in
    ``caSecret``; Ray's gRPC then accepts only peers holding a certificate of that CA (RAY_USE_TLS).
    """

    enabled: bool = Field(default=True, description="false: Ray's gRPC without TLS (soul.policies.mTLS: disabled).")
    ca_secret: str = Field(
        default="mnemos-ray-ca",
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="Secret holding the CA: tls.crt + tls.key (`kubectl create secret tls`, cert-manager) or "
        "ca.crt + ca.key. Create it once, before the first apply; only the init containers mount it.",
    )


class KubeRayValues(CoreModel):
    """Everything the RayCluster, RayService and RayJob are rendered from."""

    name: str = Field(
        default="mnemos", description="RayService name; the RayCluster is <name>-cluster, the RayJob <name>-job."
    )
    namespace: str = "mnemos"
    ray_version: str = "2.60.0"
    image: ImageValues = Field(default_factory=ImageValues)
    service_account: ObjectName | None = Field(
        default=None, description="Pod service account; none: KubeRay creates one for the autoscaler."
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="Extra labels on every object and pod."
    )
    env: dict[EnvName, Text] = Field(default_factory=dict, description="Extra environment of every Ray container.")
    head: HeadValues = Field(default_factory=HeadValues)
    worker_groups: list[WorkerGroupValues] = Field(default_factory=_default_worker_groups)
    autoscaling: AutoscalingValues = Field(default_factory=AutoscalingValues)
    gcs_fault_tolerance: GcsFaultToleranceValues = Field(default_factory=GcsFaultToleranceValues)
    storage: StorageValues = Field(default_factory=StorageValues)
    security: SecurityValues = Field(default_factory=SecurityValues)
    tls: TlsValues = Field(default_factory=TlsValues)
    serve: ServeValues = Field(default_factory=ServeValues)
    job: JobValues = Field(default_factory=JobValues)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not re.fullmatch(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", value):
            raise ValueError(f"{value!r} is not a valid namespace: lowercase letters, digits and '-'")
        return value

    @field_validator("name")
    @classmethod
    def _short_name(cls, value: str) -> str:
        _dns_label(value)
        # KubeRay appends "-xxxxx" to RayService/RayJob names and "-serve-svc" to cluster names.
        if len(value) > 40:
            raise ValueError(f"{value!r} is longer than 40 characters (KubeRay derives longer names from it)")
        return value

    @model_validator(mode="after")
    def _serve_port(self) -> KubeRayValues:
        # Ray's metrics listen on 8090 (the renderer's METRICS_PORT) in every Ray pod.
        taken = {**RAY_PORTS, 8090: "Ray's metrics"}.get(self.serve.port)
        if taken:
            raise ValueError(f"serve.port: {self.serve.port} is the port of {taken} in every Ray pod; "
                             "choose another (default 8080)")  # fmt: skip
        return self

    @field_validator("worker_groups")
    @classmethod
    def _unique_groups(cls, value: list[WorkerGroupValues]) -> list[WorkerGroupValues]:
        names = [g.name for g in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"worker group names must be unique: {', '.join(duplicates)} repeated")
        return value

    def group(self, name: str) -> WorkerGroupValues:
        """The worker group named ``name``; an unknown name lists the valid ones."""
        for g in self.worker_groups:
            if g.name == name:
                return g
        valid = ", ".join(g.name for g in self.worker_groups)
        raise NotFoundError(f"no worker group {name!r}; worker groups: {valid}", param="workerGroups")
