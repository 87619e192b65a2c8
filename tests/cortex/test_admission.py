"""Admission rules that need no cluster: Policy quotas per label value."""

from __future__ import annotations

import pytest

from mnemos.cortex.admission import check_quotas, job_policies, usage_of
from mnemos.cortex.job import Job
from mnemos.errors import AdmissionError
from mnemos.genome import parse_resource


def _policy(name: str, quotas: list[dict], kinds: list[str] | None = None, match: dict | None = None):
    return parse_resource(
        {
            "apiVersion": "genome.mnemos.dev/v1",
            "kind": "Policy",
            "metadata": {"name": name},
            "spec": {"selector": {"kinds": kinds or [], "matchLabels": match or {}}, "quotas": quotas},
        }
    )


def _job(job_id: str, gpus: float = 0, team: str | None = "vision", **labels: str) -> Job:
    if team:
        labels["team"] = team
    return Job(id=job_id, queue="default", function="m:f", resources={"gpus": gpus}, labels=labels)


def test_max_gpus_counts_what_a_team_holds() -> None:
    policies = job_policies([_policy("gpu-quota", [{"label": "team", "maxGpus": 2}])])
    usage = usage_of(policies, [_job("a", gpus=1), _job("b", gpus=0.5), _job("c", gpus=4, team="nlp")])
    check_quotas(_job("d", gpus=0.5), policies, usage)  # 1.5 + 0.5 = 2: allowed, and counted
    with pytest.raises(AdmissionError) as refused:
        check_quotas(_job("e", gpus=0.5), policies, usage)
    assert "Policy 'gpu-quota' quotas[0].maxGpus" in refused.value.message
    assert "team=vision would hold 2.5 GPUs, over 2" in refused.value.message
    assert refused.value.details["rule"] == "quotas[0].maxGpus"
    check_quotas(_job("f", gpus=1, team="audio"), policies, usage)  # other teams have their own budget
    check_quotas(_job("g", gpus=0), policies, usage)  # CPU jobs hold no GPUs


def test_max_running_jobs_and_selectors() -> None:
    policies = job_policies(
        [
            _policy("jobs-cap", [{"label": "team", "maxRunningJobs": 1}], kinds=["Job"], match={"tier": "batch"}),
            _policy("models-only", [{"label": "team", "maxGpus": 0}], kinds=["Model"]),  # not for jobs
        ]
    )
    assert [p.name for p in policies] == ["jobs-cap"]
    usage = usage_of(policies, [])
    check_quotas(_job("a", tier="batch"), policies, usage)
    check_quotas(_job("b", tier="online"), policies, usage)  # the selector does not match
    with pytest.raises(AdmissionError, match="maxRunningJobs: team=vision would have 2 active jobs, over 1"):
        check_quotas(_job("c", tier="batch"), policies, usage)
    check_quotas(_job("d", team=None, tier="batch"), policies, usage)  # no team label: no group to count in


def _owned(job_id: str, principal: str, credential_team: str = "", **labels: str) -> Job:
    if credential_team:
        labels["mnemos.dev/team"] = credential_team
    return Job(id=job_id, queue="default", function="m:f", principal=principal, labels=labels)


def test_a_quota_per_principal_counts_every_job_of_its_owner_whatever_its_labels() -> None:
    policies = job_policies([_policy("per-user", [{"per": "principal", "maxRunningJobs": 1}])])
    usage = usage_of(policies, [_owned("a", "alice")])
    with pytest.raises(AdmissionError, match="maxRunningJobs: principal=alice would have 2 active jobs") as refused:
        check_quotas(_owned("b", "alice"), policies, usage)  # no label to leave off: the owner counts
    assert refused.value.param == "principal"
    with pytest.raises(AdmissionError):
        check_quotas(_owned("c", "alice", "other", project="x"), policies, usage)
    check_quotas(_owned("d", "bob"), policies, usage)  # another owner has a quota of their own


def test_a_quota_per_team_counts_the_credentials_team_and_can_name_teams() -> None:
    quotas = [{"per": "team", "teams": ["vision"], "maxRunningJobs": 1}, {"per": "team", "maxGpus": 0}]
    policies = job_policies([_policy("per-team", quotas)])
    usage = usage_of(policies, [_owned("a", "alice", "vision")])
    # the credential's team counts, not a `team` label the submitter writes
    with pytest.raises(AdmissionError, match="quotas\\[0\\].maxRunningJobs: team=vision would have 2"):
        check_quotas(_owned("b", "bob", "vision", team="nlp"), policies, usage)
    check_quotas(_owned("c", "carol", "nlp"), policies, usage)  # quotas[0] names only vision
    # jobs with no team share one group (team=): leaving the team off does not leave the quota
    gpu_job = Job(id="e", queue="default", function="m:f", principal="eve", resources={"gpus": 1})
    with pytest.raises(AdmissionError, match="quotas\\[1\\].maxGpus: team= would hold 1 GPUs"):
        check_quotas(gpu_job, policies, usage)
