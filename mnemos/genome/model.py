"""``genome.mnemos.dev/v1`` Model: a servable model, as in the seed plus serving fields."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mnemos._model import CoreModel
from mnemos.genome._base import Resource
from mnemos.genome.metering import CacheSpec, Pricing, UsageLimits

__all__ = [
    "ARTIFACT_SCHEMES",
    "Artifact",
    "Autoscaling",
    "ENGINES",
    "GATEWAY_FIELDS",
    "Model",
    "ModelPolicy",
    "ModelSpec",
    "Resources",
    "Runtime",
    "RuntimeParams",
    "Tokenizer",
    "check_model",
]

ENGINES = ("transformers", "vllm", "embedding", "echo")


ARTIFACT_SCHEMES = ("engram", "file", "s3", "hf", "pypi")
"""The schemes ``spec.artifact.uri`` may name (``mnemos.neuron.models.materialize`` loads them); a
plain path is a local one."""
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?i?B?\s*$")  # as the replica reads it


class Artifact(CoreModel):
    uri: str = Field(description="engram://, file://, s3://, hf:// or pypi:// URI of the weights (file or folder), "
                     "or a local path.")  # fmt: skip
    sha256: str | None = Field(
        None, description="Digest of the artifact ('sha256:<hex>'); checked on every load when it is a digest."
    )


class Tokenizer(CoreModel):
    uri: str | None = Field(None, description="Tokenizer location; defaults to the artifact's folder.")


class RuntimeParams(CoreModel):
    """Engine parameters. Known names are typed; pass anything else through ``engineKwargs``."""

    tensor_parallel: int = Field(1, ge=1, description="GPUs per replica for vLLM.")
    max_tokens: int = Field(2048, ge=1, description="Upper bound on generated tokens per request.")
    max_model_len: int | None = Field(None, ge=16, description="Context length (vLLM).")
    dtype: str | None = Field(None, description="float32, bfloat16, float16, auto.")
    device: str | None = Field(None, description="cpu or cuda; default: cuda when the replica has a GPU.")
    max_batch_size: int = Field(8, ge=1, description="Dynamic batching: most requests per forward pass.")
    batch_wait_ms: float = Field(5.0, ge=0, description="Dynamic batching: how long to gather a batch.")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Passed to the engine unchanged.")


class Runtime(CoreModel):
    engine: Literal["transformers", "vllm", "embedding", "echo"] = Field(
        description="NEURON runtime: transformers (CPU/GPU), vllm, embedding, echo (tests/benchmarks)."
    )
    params: RuntimeParams = Field(default_factory=RuntimeParams)


class ModelPolicy(CoreModel):
    pii: Literal["redact", "allow"] = Field(
        "allow", description="redact: e-mails, phone and card numbers are removed from every prompt before the model "
        "reads it (in its own replicas: the gateway's requests, pipelines' and notebooks' alike).")
    license: str | None = Field(None, description="SPDX id, checked by Policy license allowlists.")


class Autoscaling(CoreModel):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(8.0, gt=0)

    @model_validator(mode="after")
    def _min_below_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is more than maxReplicas {self.max_replicas}: "
                             "raise maxReplicas or lower minReplicas")  # fmt: skip
        return self


class Resources(CoreModel):
    cpus: float = Field(1.0, ge=0, description="CPUs per replica.")
    gpus: float = Field(
        0.0, ge=0,
        description="GPUs per replica: a fraction below 1 shares one GPU with other replicas (give each engine a "
        "matching runtime.params.gpuMemoryUtilization); above 1, whole GPUs.",
    )  # fmt: skip
    accelerator: str | None = Field(None, description="Ray accelerator type, e.g. H100, A10G.")
    memory: str | None = Field(None, description="Memory per replica, e.g. 16Gi.")
    selector: dict[str, str] = Field(
        default_factory=dict,
        description="Ray node labels a replica's node must carry, e.g. {accelerator: nvidia} (like a pool's "
        "selector). A replica waits until an alive node carries them; a lost node's replicas move to another.",
    )

    @field_validator("memory")
    @classmethod
    def _size(cls, memory: str | None) -> str | None:
        if memory is not None and not _MEMORY.match(memory):
            raise ValueError(f"{memory[:100]!r} is not a size: write bytes or a size like 512Mi or 16Gi")
        return memory

    @field_validator("gpus")
    @classmethod
    def _whole_above_one(cls, gpus: float) -> float:
        if gpus > 1 and not gpus.is_integer():  # Ray schedules fractions of one GPU only
            raise ValueError(f"{gpus:g} GPUs: a fraction must be below 1 (one shared GPU), more than one must be whole")
        return gpus


class ModelSpec(CoreModel):
    family: str
    version: str
    artifact: Artifact
    tokenizer: Tokenizer | None = None
    runtime: Runtime
    policy: ModelPolicy = Field(default_factory=ModelPolicy)
    replicas: int = Field(1, ge=0, description="Fixed replicas when autoscaling is not set.")
    autoscaling: Autoscaling | None = None
    resources: Resources = Field(default_factory=Resources)
    pricing: Pricing | None = Field(None, description="Price per 1k input/output tokens (spend and budgets).")
    limits: UsageLimits | None = Field(None, description="Requests/tokens per minute for this model, all callers.")
    cache: CacheSpec | None = Field(None, description="Exact-match response cache (opt-in).")
    routing: Literal["default", "prefix-aware"] = Field(
        "default",
        description="How requests pick a replica: Serve's default (power of two choices) or, for engine: vllm, "
        "Ray Serve LLM's prefix-aware router (requests sharing a prompt prefix go to the replica that cached it).",
    )


GATEWAY_FIELDS = frozenset({"pricing", "limits", "cache"})
"""Spec fields only the gateway reads: a generation that changes nothing else is served by the
replicas already running (no engine reload)."""


class Model(Resource):
    API_VERSION: ClassVar[str] = "genome.mnemos.dev/v1"

    api_version: str = API_VERSION
    kind: Literal["Model"] = "Model"
    spec: ModelSpec

    def serving_fingerprint(self) -> str:
        """SHA-256 of what the model's replicas are built from: the spec without ``GATEWAY_FIELDS``."""
        served = self.spec.model_dump(mode="json", exclude=set(GATEWAY_FIELDS))
        return hashlib.sha256(json.dumps(served, sort_keys=True).encode()).hexdigest()


def check_model(model: Model) -> None:
    """What a replica would refuse in a Model, checked on every write (GENOME admission), so that an
    apply is refused naming the field rather than the model only showing ``DeployFailed``: the
    artifact's scheme (``ARTIFACT_SCHEMES``, or a local path) and its ``sha256``."""
    from mnemos.errors import ValidationError

    artifact = model.spec.artifact
    tokenizer = model.spec.tokenizer.uri if model.spec.tokenizer is not None else None
    for field, uri in (("artifact.uri", artifact.uri), ("tokenizer.uri", tokenizer)):
        if uri and _carries_credentials(uri):  # named, never repeated: an error reaches logs
            raise ValidationError(f"model/{model.name}: spec.{field}: must not carry credentials (user:password@): "
                                  "every reader of the Model sees them; give the replicas theirs through the "
                                  "environment (AWS_ACCESS_KEY_ID, HF_TOKEN)", param=f"spec.{field}")  # fmt: skip
    scheme, _, rest = artifact.uri.partition("://") if "://" in artifact.uri else ("file", "", artifact.uri)
    where = f"model/{model.name}: spec.artifact"
    if scheme not in ARTIFACT_SCHEMES:
        raise ValidationError(f"{where}.uri: unknown scheme {scheme[:50]!r} in {artifact.uri[:200]!r}: use "
                              f"{', '.join(s + '://' for s in ARTIFACT_SCHEMES)} or a local path",
                              param="spec.artifact.uri")  # fmt: skip
    if not rest.strip():
        raise ValidationError(f"{where}.uri: {artifact.uri!r} names no artifact: give the folder (or file) of the "
                              "weights, e.g. engram://models/NAME or file:///models/NAME", param="spec.artifact.uri")
    digest = artifact.sha256
    if digest is not None and "..." not in digest and not _is_digest(digest):  # sha256:... : a placeholder
        raise ValidationError(f"{where}.sha256: {digest[:100]!r} is not a sha256 digest: write 'sha256:' and 64 "
                              "lowercase hex digits (what `mnemos model register` prints), or leave it out",
                              param="spec.artifact.sha256")  # fmt: skip


def _carries_credentials(uri: str) -> bool:
    """Whether ``uri``'s authority holds ``user:password@`` (``s3://KEY:SECRET@bucket/…``); an
    ``@`` alone is not one (``hf://gpt2@main``, a revision)."""
    authority = uri.partition("://")[2].split("/", 1)[0] if "://" in uri else ""
    user, at, _ = authority.rpartition("@")
    return bool(at) and ":" in user


def _is_digest(value: str) -> bool:
    from mnemos.engram.keys import normalize_digest
    from mnemos.errors import InvalidKeyError

    try:
        normalize_digest(value)
    except InvalidKeyError:
        return False
    return True
