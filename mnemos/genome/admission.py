"""GENOME admission: schema first (done by parsing), then the kind's own checks (a Pipeline's
steps: ``check_steps``), then every matching Policy's rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mnemos.errors import AdmissionError, ValidationError
from mnemos.genome._base import Resource
from mnemos.genome.adapter import Adapter
from mnemos.genome.model import Model, check_model
from mnemos.genome.pipeline import Pipeline, check_steps
from mnemos.genome.policy import Policy

__all__ = ["MAX_BUDGET_WINDOW_S", "MIN_BUDGET_WINDOW_S", "admit", "check", "check_budget_window"]

MIN_BUDGET_WINDOW_S = 1.0
"""The shortest budget window (``limits.budget.window``): one of 1 ms resets a thousand times a
second and limits nothing. A new one shorter is refused (``check_budget_window``: API keys, tokens,
Policies, Models, Adapters); one stored before that is enforced as this
(``mnemos.soul.limits.budget_window``)."""
MAX_BUDGET_WINDOW_S = 100 * 365 * 86400.0
"""The longest budget window (100 years, as a credential's longest lifetime): past it a window is no
span a clock or a message shows (``99999999999999d`` read as ``8639999999999913984s``)."""


def check_budget_window(budget: Any, param: str) -> None:
    """Refuse a new budget (a ``Budget``, or None) whose window is shorter than ``MIN_BUDGET_WINDOW_S``
    or longer than ``MAX_BUDGET_WINDOW_S``.

    Raises:
        ValidationError: names ``param`` and the fix.
    """
    if budget is not None and float(budget.window) > MAX_BUDGET_WINDOW_S:
        raise ValidationError(f"{param}: {float(budget.window):g} s is longer than the longest budget window "
                              f"(100 years, {MAX_BUDGET_WINDOW_S:g} s): give at most 36500d", param=param)  # fmt: skip
    if budget is not None and float(budget.window) < MIN_BUDGET_WINDOW_S:
        raise ValidationError(
            f"{param}: {float(budget.window):g} s is shorter than the shortest budget window "
            f"({MIN_BUDGET_WINDOW_S:g} s; a budget that resets that often limits nothing): give 1s or more, "
            "e.g. 1h, 1d, 30d",
            param=param,
        )


def _check_budget_windows(resource: Resource) -> None:
    """The budget windows of a Policy's ``spec.limits`` rules, or of a Model's or Adapter's ``spec.limits``."""
    if isinstance(resource, Policy):
        for i, rule in enumerate(resource.spec.limits):
            check_budget_window(rule.budget, f"spec.limits[{i}].budget.window")
    elif isinstance(resource, (Model, Adapter)) and resource.spec.limits is not None:
        check_budget_window(resource.spec.limits.budget, "spec.limits.budget.window")


def check(resource: Resource) -> None:
    """The checks of ``resource`` beyond its schema that need no Policy (a ``ValidationError``):
    what a run would refuse in a Pipeline (``mnemos.genome.pipeline.check_steps``), what a replica
    would refuse in a Model (``mnemos.genome.model.check_model``), a budget window under
    ``MIN_BUDGET_WINDOW_S``."""
    _check_budget_windows(resource)
    if isinstance(resource, Pipeline):
        check_steps(resource)
    elif isinstance(resource, Model):
        check_model(resource)


def _matches(policy: Policy, resource: Resource) -> bool:
    sel = policy.spec.selector
    kind = type(resource).__name__
    if sel.kinds and kind not in sel.kinds:
        return False
    labels = resource.metadata.labels
    return all(labels.get(k) == v for k, v in sel.match_labels.items())


def _violations(policy: Policy, resource: Resource) -> list[str]:
    rules = policy.spec.rules
    found: list[str] = []
    labels = resource.metadata.labels
    missing = [lbl for lbl in rules.required_labels if lbl not in labels]
    if missing:
        found.append(f"requiredLabels: missing label(s) {', '.join(missing)}")
    if isinstance(resource, Model):
        spec = resource.spec
        if rules.allowed_licenses is not None and spec.policy.license not in rules.allowed_licenses:
            found.append(
                f"allowedLicenses: license {spec.policy.license!r} is not one of {', '.join(rules.allowed_licenses)}"
            )
        if rules.allowed_engines is not None and spec.runtime.engine not in rules.allowed_engines:
            found.append(
                f"allowedEngines: engine {spec.runtime.engine!r} is not one of {', '.join(rules.allowed_engines)}"
            )
        scheme = spec.artifact.uri.split("://", 1)[0] if "://" in spec.artifact.uri else "file"
        if rules.allowed_artifact_schemes is not None and scheme not in rules.allowed_artifact_schemes:
            found.append(
                f"allowedArtifactSchemes: {scheme}:// is not one of {', '.join(rules.allowed_artifact_schemes)}"
            )
        replicas = spec.autoscaling.max_replicas if spec.autoscaling else spec.replicas
        if rules.max_replicas is not None and replicas > rules.max_replicas:
            found.append(f"maxReplicas: {replicas} replicas exceed {rules.max_replicas}")
        if rules.max_gpus_per_replica is not None and spec.resources.gpus > rules.max_gpus_per_replica:
            found.append(f"maxGpusPerReplica: {spec.resources.gpus} GPUs exceed {rules.max_gpus_per_replica}")
    return found


def admit(resource: Resource, policies: Iterable[Policy]) -> None:
    """Refuse ``resource``: a ``ValidationError`` from ``check``, else an ``AdmissionError`` naming
    the policy and rule it breaks.

    Policies never apply to Policy resources (an operator must always be able to fix a policy).
    A rule that fails to evaluate refuses the resource under ``failurePolicy: Fail`` and is
    skipped under ``Ignore``.
    """
    check(resource)
    if isinstance(resource, Policy):
        return
    kind = type(resource).__name__
    for policy in policies:
        if not _matches(policy, resource):
            continue
        try:
            problems = _violations(policy, resource)
        except Exception as exc:  # noqa: BLE001 - a broken rule is handled by failurePolicy
            if policy.spec.failure_policy == "Ignore":
                continue
            problems = [f"rule evaluation failed ({exc})"]
        if problems:
            raise AdmissionError(
                f"admission refused {kind} {resource.name!r}: Policy {policy.name!r}: {'; '.join(problems)}",
                param="spec",
                policy=policy.name,
            )
