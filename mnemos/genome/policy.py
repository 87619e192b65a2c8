"""``genome.mnemos.dev/v1`` Policy: admission rules, quotas and rate limits."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mnemos._model import CoreModel
from mnemos.genome._base import Resource
from mnemos.genome.metering import MAX_RATE, LimitRule

__all__ = ["SELECTABLE_KINDS", "AccessRule", "Policy", "PolicyRules", "PolicySpec", "Quota", "RateLimitRule",
           "Selector"]


SELECTABLE_KINDS = ("Model", "Policy", "Adapter", "Function", "Pipeline", "Job")
"""What a selector's ``kinds`` names: GENOME's kinds, and ``Job`` (CORTEX quotas)."""
_SELECTABLE = ({k.lower(): k for k in SELECTABLE_KINDS} | {k.lower() + "s": k for k in SELECTABLE_KINDS}
               | {k.lower()[:-1] + "ies": k for k in SELECTABLE_KINDS if k.endswith("y")})  # policies, as models


class Selector(CoreModel):
    kinds: list[str] = Field(default_factory=list, description="Kinds the rules apply to (Model, Policy, Adapter, "
                             "Function, Pipeline, Job); empty: all.")  # fmt: skip
    match_labels: dict[str, str] = Field(default_factory=dict, description="Labels a resource must carry.")

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        """Each kind as it is spelled (``model``, ``models`` → ``Model``); an unknown one is refused: a
        selector naming no kind would match nothing, and its rules would silently admit everything."""
        out = []
        for kind in value:
            known = _SELECTABLE.get(kind.lower())
            if known is None:
                raise ValueError(f"{kind!r} is not a kind: use {', '.join(SELECTABLE_KINDS)}")
            out.append(known)
        return out


class Quota(CoreModel):
    """What the active jobs of one group may hold at once.

    ``per`` says what groups jobs: ``principal`` (the subject that submitted the job) and ``team``
    (the team of its credential) come from the identity the gateway authenticated, which a
    submitter cannot choose; ``label`` (the default) groups by the value of the job's own label
    ``label``, which the submitter sets (a job without it is not counted): use it for grouping,
    not to hold callers to a limit.
    """

    per: Literal["label", "principal", "team"] = Field(
        "label", description="What groups jobs: principal or team (authenticated), or label (the submitter's)."
    )
    label: str = Field("team", description="With per: label, the label whose value groups jobs.")
    principals: list[str] = Field(default_factory=list, description="Principals it applies to; empty: all.")
    teams: list[str] = Field(default_factory=list, description="Teams (of the submitting credential); empty: all.")
    max_gpus: float | None = Field(None, ge=0, description="GPUs one group may hold at once.")
    max_cpus: float | None = Field(None, ge=0)
    max_running_jobs: int | None = Field(None, ge=0)


class RateLimitRule(CoreModel):
    # Bounded as metering's rates are: a burst of 10**400 made every request of every principal a 500
    # (int too large for a float in the edge's token bucket), the admin's fix through the gateway too.
    requests_per_second: float = Field(gt=0, le=MAX_RATE)
    burst: int = Field(ge=1, le=MAX_RATE)
    principals: list[str] = Field(default_factory=list, description="Principals it applies to; empty: all.")


class PolicyRules(CoreModel):
    allowed_licenses: list[str] | None = Field(None, description="Model licenses admitted; none: any.")
    allowed_engines: list[str] | None = Field(None, description="Runtime engines admitted; none: any.")
    allowed_artifact_schemes: list[str] | None = Field(None, description="e.g. [engram, s3]; none: any.")
    required_labels: list[str] = Field(default_factory=list, description="Labels every resource must carry.")
    max_replicas: int | None = Field(None, ge=0)
    max_gpus_per_replica: float | None = Field(None, ge=0)


class AccessRule(CoreModel):
    """Who may call some models: a model named by any access rule is served only to the principals
    and teams its rules name (an allowlist), through the gateway and pipelines alike."""

    models: list[str] = Field(min_length=1, description="The models this rule opens (to these callers only).")
    principals: list[str] = Field(default_factory=list, description="Principal names (API key names, subjects).")
    teams: list[str] = Field(default_factory=list, description="Teams (the `team` of API keys and tokens).")

    @model_validator(mode="after")
    def _names_someone(self) -> AccessRule:
        if not self.principals and not self.teams:
            raise ValueError("an access rule names principals or teams: one naming nobody would close its models "
                             "to every caller (to stop serving a model, set its replicas to 0)")
        return self


class PolicySpec(CoreModel):
    selector: Selector = Field(default_factory=Selector)
    rules: PolicyRules = Field(default_factory=PolicyRules)
    quotas: list[Quota] = Field(default_factory=list)
    rate_limit: RateLimitRule | None = None
    limits: list[LimitRule] = Field(
        default_factory=list, description="Requests/tokens per minute and budgets per principal, team or model."
    )
    access: list[AccessRule] = Field(
        default_factory=list, description="Models only some principals or teams may call (allowlists)."
    )
    failure_policy: Literal["Fail", "Ignore"] = Field("Fail", description="Fail: a rule that errors refuses.")


class Policy(Resource):
    API_VERSION: ClassVar[str] = "genome.mnemos.dev/v1"

    api_version: str = API_VERSION
    kind: Literal["Policy"] = "Policy"
    spec: PolicySpec
