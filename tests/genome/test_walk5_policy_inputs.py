"""What a Policy took that it should not, or refused that it should take.

A Policy's ``spec.rateLimit`` had no ceiling: ``{"requestsPerSecond": 1, "burst": 10**400}``
(``POST /apis/genome.mnemos.dev/v1/policies``, or ``mnemos apply -f``) was stored, and within seconds
every request of every principal to the gateway was a 500 (``OverflowError: int too large to convert
to float`` in the edge's token bucket), the admin's ``DELETE`` of the Policy included: only
``mnemos delete policy …`` on the platform's own machine undid it. It is now refused naming the
field, with the ceiling metering's rates have (``MAX_RATE``), and the edge's bucket takes the largest
values admitted.
"""

from __future__ import annotations

import pytest

from mnemos.errors import ValidationError
from mnemos.genome import parse_resource
from mnemos.genome.metering import MAX_RATE


def _policy(rate_limit: dict) -> dict:
    return {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": "limits"},
            "spec": {"rateLimit": rate_limit}}  # fmt: skip


@pytest.mark.parametrize("field, rate_limit", [
    ("burst", {"requestsPerSecond": 1, "burst": 10**400}),
    ("burst", {"requestsPerSecond": 1, "burst": MAX_RATE + 1}),
    ("requestsPerSecond", {"requestsPerSecond": 1e300, "burst": 1}),
])  # fmt: skip
def test_a_rate_limit_past_the_ceiling_is_refused_naming_its_field(field: str, rate_limit: dict) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_resource(_policy(rate_limit))
    assert refused.value.param == f"spec.rateLimit.{field}", refused.value.message


def test_the_largest_rate_limit_admitted_is_one_the_edge_can_enforce(local_engram) -> None:
    from mnemos.genome import Registry
    from mnemos.soul.bucket import TokenBucket

    policy = parse_resource(_policy({"requestsPerSecond": MAX_RATE, "burst": MAX_RATE}))
    Registry(local_engram).apply(policy)
    limit = Registry(local_engram).get("Policy", "limits").spec.rate_limit
    bucket = TokenBucket(limit.requests_per_second, limit.burst)  # what the edge builds per principal
    assert bucket.take() and bucket.level() <= MAX_RATE


# `mnemos get policies` answered "error: unknown kind 'policies': valid kinds are Model, Policy, …"
# (exit 3) while `mnemos get models` listed the models, and a Policy's `selector.kinds: [policies]`
# was refused ("'policies' is not a kind") though the guide reads `models` as `Model`: the plural
# was made as kind + "s" (`policys`).
def test_the_plural_of_policy_names_the_kind_as_models_does() -> None:
    from mnemos.genome import resolve_kind
    from mnemos.genome.policy import Policy

    assert resolve_kind("policies") is Policy and resolve_kind("Policies") is Policy
    policy = parse_resource({**_policy({"requestsPerSecond": 1, "burst": 1}),
                             "spec": {"selector": {"kinds": ["policies", "models"]}}})  # fmt: skip
    assert policy.spec.selector.kinds == ["Policy", "Model"]


def test_mnemos_get_policies_lists_the_policies(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MNEMOS_URL", "MNEMOS_API_KEY")}
    (tmp_path / "p.yaml").write_text("apiVersion: genome.mnemos.dev/v1\nkind: Policy\nmetadata: {name: quiet}\n"
                                     "spec: {}\n")  # fmt: skip
    for args in (["apply", "-f", "p.yaml"], ["get", "policies"]):
        done = subprocess.run([sys.executable, "-m", "mnemos", *args], cwd=tmp_path, capture_output=True, text=True,
                              env={**env, "MNEMOS_HOME": str(tmp_path)}, timeout=180)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert "quiet" in done.stdout
