"""CORTEX admission: a job is checked before it is queued, and a refusal names the rule.

In order:

1. the queue must be declared (``settings.cortex.queues``) — ``NotFoundError``;
2. Policy quotas from the GENOME registry — every Policy whose selector admits kind ``Job``
   (``kinds`` empty or listing ``Job``) and whose ``matchLabels`` the job carries;
   ``quotas[].maxGpus`` / ``maxCpus`` / ``maxRunningJobs`` cap what the jobs of one group hold
   at once (queued, running or retrying). ``quotas[].per`` names the group: ``principal`` (the
   job's owner) or ``team`` (the submitting credential's team, the reserved label
   ``mnemos.dev/team`` that the gateway sets; jobs without one share the group ``team=``), both
   from the authenticated identity; or ``label`` (the default), the value of the job's label
   ``quotas[].label``, which the submitter chooses (a job without it is not counted).
   ``quotas[].principals`` / ``teams`` limit a quota to those callers;
3. resources against the pools: some declared pool must fit the request, and have workers —
   a GPU job on a cluster without GPUs is refused, never left queued forever.

Refusals are ``AdmissionError`` (HTTP 403, CLI exit 7) with ``rule`` and, for quotas, ``policy``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mnemos._actors import GENOME, NAMESPACE
from mnemos.cortex.job import TEAM_LABEL, Job
from mnemos.engram import Engram
from mnemos.errors import AdmissionError
from mnemos.genome.policy import Policy, Quota
from mnemos.neuron.pools import PoolSet

__all__ = ["PolicyCache", "QuotaUsage", "check_quotas", "check_resources", "describe_ask", "job_policies", "usage_of"]


@dataclass
class QuotaUsage:
    """What the active jobs of one group (a principal, a team, a label value) hold."""

    gpus: float = 0.0
    cpus: float = 0.0
    jobs: int = 0

    def add(self, job: Job, sign: int = 1) -> None:
        self.gpus += sign * float(job.resources.get("gpus") or 0)
        self.cpus += sign * float(job.resources.get("cpus") or 0)
        self.jobs += sign


def job_policies(policies: Iterable[Policy]) -> list[Policy]:
    """The policies whose selector can admit jobs and that carry quotas."""
    return [p for p in policies if p.spec.quotas and (not p.spec.selector.kinds or "Job" in p.spec.selector.kinds)]


def _applies(policy: Policy, job: Job) -> bool:
    return all(job.labels.get(k) == v for k, v in policy.spec.selector.match_labels.items())


UsageKey = tuple[str, int, str]  # (policy, quota index, group value)


def _group(quota: Quota, job: Job) -> str | None:
    """The value of the group ``job`` counts in for ``quota`` (``None``: the quota does not count it)."""
    principal, team = job.principal or "", job.labels.get(TEAM_LABEL, "")
    if (quota.principals and principal not in quota.principals) or (quota.teams and team not in quota.teams):
        return None
    if quota.per == "principal":
        return principal
    if quota.per == "team":
        return team
    return job.labels.get(quota.label)


def _who(quota: Quota, value: str) -> str:
    """How a group is named in a refusal: ``principal=alice``, ``team=vision``, ``<label>=<value>``."""
    return f"{quota.label if quota.per == 'label' else quota.per}={value}"


def _keys(policies: list[Policy], job: Job) -> list[tuple[UsageKey, Policy, int, Quota]]:
    """The quota counters ``job`` falls under: policies that apply to it, quotas that count it."""
    out = []
    for policy in policies:
        if not _applies(policy, job):
            continue
        for index, quota in enumerate(policy.spec.quotas):
            value = _group(quota, job)
            if value is not None:
                out.append(((policy.name, index, value), policy, index, quota))
    return out


def usage_of(policies: list[Policy], active: Iterable[Job]) -> dict[UsageKey, QuotaUsage]:
    """What the active jobs hold, per quota and group."""
    usage: dict[UsageKey, QuotaUsage] = {}
    for job in active:
        for key, *_ in _keys(policies, job):
            usage.setdefault(key, QuotaUsage()).add(job)
    return usage


def _over(quota: Quota, value: str, used: QuotaUsage, job: Job) -> str | None:
    gpus = float(job.resources.get("gpus") or 0)
    cpus = float(job.resources.get("cpus") or 0)
    who = _who(quota, value)
    if quota.max_gpus is not None and gpus > 0 and used.gpus + gpus > quota.max_gpus:
        return f"maxGpus: {who} would hold {used.gpus + gpus:g} GPUs, over {quota.max_gpus:g}"
    if quota.max_cpus is not None and cpus > 0 and used.cpus + cpus > quota.max_cpus:
        return f"maxCpus: {who} would hold {used.cpus + cpus:g} CPUs, over {quota.max_cpus:g}"
    if quota.max_running_jobs is not None and used.jobs + 1 > quota.max_running_jobs:
        return f"maxRunningJobs: {who} would have {used.jobs + 1} active jobs, over {quota.max_running_jobs}"
    return None


def check_quotas(job: Job, policies: list[Policy], usage: dict[UsageKey, QuotaUsage]) -> None:
    """Refuse ``job`` if it would take its group over a quota; else count it in ``usage``."""
    keys = _keys(policies, job)
    for key, policy, index, quota in keys:
        problem = _over(quota, key[2], usage.get(key, QuotaUsage()), job)
        if problem:
            name, detail = problem.split(": ", 1)
            rule = f"quotas[{index}].{name}"
            raise AdmissionError(
                f"admission refused job {job.name or job.id}: Policy {policy.name!r} {rule}: {detail}",
                param="labels" if quota.per == "label" else quota.per,
                policy=policy.name,
                rule=rule,
            )
    for key, *_ in keys:
        usage.setdefault(key, QuotaUsage()).add(job)


def describe_ask(request: dict[str, Any], rule: str) -> str:
    """What a job's ``resources`` asks for under ``rule`` (``resources.gpus``, ``…cpus``, ``…selector``,
    ``…pool``), as a refusal says it (a pipeline's run-start check too), cut where the caller chose its length."""
    field = rule.split(".", 1)[1]
    value = request.get(field)
    if field == "gpus":
        return f"{float(value or 0):g} GPU{'s' if float(value or 0) != 1 else ''}"
    if field == "cpus":
        return f"{float(value or 0):g} CPUs per worker"
    if field == "selector":  # what the submitter sent, cut: a refusal never echoes a body whole
        return "selector " + _cut(", ".join(f"{k}={v}" for k, v in (value or {}).items()), 200)
    return f"pool {_cut(repr(value))}"


def _cut(text: str, most: int = 80) -> str:
    return text if len(text) <= most else f"{text[:most]}… ({len(text)} characters)"


def check_resources(job: Job, pools: PoolSet) -> None:
    """Refuse ``job`` if no declared pool fits it, or none that fits has workers."""
    request = job.resources
    fits, unfit = pools.declared(request)
    if not fits:
        named = request.get("pool")
        if named in unfit:  # a declared pool, by name: what that pool lacks, not that the others are not it
            rule = unfit[named]
            offers = f"pool {named!r} does not offer it ({named}: {rule.split('.', 1)[1]})"
        else:
            rules = sorted(set(unfit.values()))
            rule = "resources.pool" if "resources.pool" in rules else rules[0] if rules else "resources"
            why = "; ".join(f"{name}: {r.split('.', 1)[1]}" for name, r in sorted(unfit.items()))
            offers = f"no declared pool offers it ({why or 'no pools are declared'})"
        raise AdmissionError(
            f"admission refused job {job.name or job.id}: rule {rule}: it asks for {describe_ask(request, rule)} "
            f"and {offers}",
            param=rule,
            rule=rule,
        )
    if any(p.active for p in fits):
        return
    if pools.refresh(throttle=2.0) and any(p.active for p in fits):  # the cluster may have grown
        return
    why = "; ".join(f"pool {p.name} has no workers: {p.reason}" for p in fits)
    if float(request.get("gpus") or 0) > 0:
        rule, ask = "resources.gpus", f"it asks for {describe_ask(request, 'resources.gpus')} and "
    else:
        rule, ask = "resources", ""
    raise AdmissionError(
        f"admission refused job {job.name or job.id}: rule {rule}: {ask}no pool that fits can run it ({why})",
        param=rule,
        rule=rule,
    )


class PolicyCache:
    """The Policies with job quotas, re-read from the registry when GENOME publishes a change.

    The ``genome`` actor's revision says whether anything changed since the last read (one
    cheap call per submit); without a ``genome`` actor the registry is re-read every 5 s.
    """

    def __init__(self, engram: Engram, namespace: str = NAMESPACE) -> None:
        self.engram = engram
        self.namespace = namespace
        self._policies: list[Policy] = []
        self._key: Any = object()
        self._read_at = -1e9
        self._genome: Any = None
        self._looked_at = -1e9

    async def _revision(self) -> Any:
        import ray

        now = time.monotonic()
        if self._genome is None and now - self._looked_at > 5:
            self._looked_at = now
            try:
                self._genome = ray.get_actor(GENOME, namespace=self.namespace)
            except ValueError:
                self._genome = None
        if self._genome is None:
            return None
        try:
            return await self._genome.revision.remote()
        except Exception:  # noqa: BLE001 - the genome actor went away: fall back to the timer
            self._genome = None
            return None

    async def get(self) -> list[Policy]:
        key = await self._revision()
        age = time.monotonic() - self._read_at
        if (key is not None and key == self._key and age < 30) or (key is None and age < 5):
            return self._policies
        from mnemos.genome.registry import Registry

        self._policies = await asyncio.to_thread(lambda: job_policies(Registry(self.engram).policies()))
        self._key, self._read_at = key, time.monotonic()
        return self._policies
