"""Property-based fuzz of the gateway's HTTP API from its own OpenAPI schema: never a 5xx.

Schemathesis generates requests (valid and invalid bodies, paths, queries) for every operation
the gateway publishes at /openapi.json — the OpenAI routes and the CORTEX, SYNKRON and TRACE
routers it includes — and sends them to the real gateway on 127.0.0.1. Bounded: a few examples
per operation, derandomized so a failure reproduces.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings


def test_no_server_error_for_any_generated_request(relay) -> None:  # noqa: ANN001 - package fixture
    schema = schemathesis.openapi.from_url(f"{relay.url}/openapi.json")
    failures: list[str] = []
    operations = 0
    calls: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def call(case) -> None:  # noqa: ANN001
            response = case.call(timeout=60)
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        call()
    assert operations >= 8, f"the schema lists only {operations} operations"
    assert len(calls) >= operations, "schemathesis sent fewer requests than there are operations"
    assert not failures, "\n".join(failures[:10])
