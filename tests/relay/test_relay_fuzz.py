"""The gateway conforms to its own OpenAPI: ``st run --checks all`` finds nothing.

Schemathesis (its CLI, as a user runs it) loads ``/openapi.json`` from the live gateway with
authentication on and an admin API key, then runs every phase (examples, coverage, fuzzing,
stateful) with every check over every operation — the OpenAI routes, the control plane
(``/apis/…``, secrets, spaces, lineage), jobs, pipelines, traces, usage, events and tokens:
no 5xx, every status and content type documented, schema-valid requests accepted, invalid ones
refused, undeclared methods answered 405 with ``Allow``. Bounded (a few examples per operation)
and seeded, so a failure reproduces with the command it prints. Other seeds and more examples:
``MNEMOS_FUZZ_SEED=5 MNEMOS_FUZZ_EXAMPLES=20 pytest tests/relay/test_relay_fuzz.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from metering_support import api_key, unique

# Per operation and phase (the coverage phase adds its own boundary cases), and the seed.
_EXAMPLES = int(os.environ.get("MNEMOS_FUZZ_EXAMPLES", "3"))
_SEED = os.environ.get("MNEMOS_FUZZ_SEED", "17")
# An event stream never ends: schemathesis reads it until the request timeout (10 s by default).
# A trace's long poll answers within its `timeout` (at most 30 s), beyond the default 10 s limits.
_CONFIG = """
[[operations]]
include-path = "/v1/events"
request-timeout = 1

# Only the bytes of the digest in its path are accepted (422 otherwise): no generator makes them.
[[operations]]
include-path-regex = "/v1/files/"
checks = { positive_data_acceptance = { expected-statuses = ["2xx", 401, 403, 404, 409, 422, 429] } }

# A queue is one of the platform's settings (cortex.queues), not of the schema: another is 422.
[[operations]]
include-path = "/v1/jobs"
checks = { positive_data_acceptance = { expected-statuses = ["2xx", 401, 403, 404, 409, 422, 429] } }

# A JWT's longest ttl is a setting (soul.policies.maxTokenTTL), and no credential outlives its minter's:
# a ttl the schema allows (up to 100 years) may be refused, 422 or 403.
[[operations]]
include-path = "/v1/tokens"
checks = { positive_data_acceptance = { expected-statuses = ["2xx", 401, 403, 404, 409, 422, 429] } }

[[operations]]
include-path = "/v1/traces/{trace_id}"
request-timeout = 40
checks = { max_response_time = 35 }
"""


def test_gateway_conforms_to_its_openapi(governed, tmp_path: Path) -> None:  # noqa: ANN001 - package fixture
    key = api_key(governed, unique("conformance"), "admin")
    st = Path(sys.executable).with_name("st")
    config = tmp_path / "schemathesis.toml"
    config.write_text(_CONFIG)
    command = [str(st), "--config-file", str(config), "run", f"{governed.url}/openapi.json", "--url", governed.url,
               "--checks", "all", "-H", f"Authorization: Bearer {key}", "--max-examples", str(_EXAMPLES),
               "--seed", _SEED, "--workers", "1", "--no-color",
               "--report", "junit", "--report-dir", str(tmp_path)]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    output = run.stdout + run.stderr
    assert key not in output, "the API key leaked into schemathesis' output"
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", output)
    assert selected is not None, output[-3000:]
    assert int(selected.group(1)) == int(selected.group(2)) >= 40, selected.group(0)
    assert re.search(rf"Tested:\s+{selected.group(1)}\b", output), output[-3000:]
    assert run.returncode == 0, output[-12000:]
