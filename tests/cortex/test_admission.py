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
