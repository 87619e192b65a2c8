"""The chart's values.schema.json: generated from ChartValues, refuses bad values on template and lint,
accepts every values file the repository ships or documents; the template checks what it cannot."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError as PydanticValidationError
from typer.testing import CliRunner

from mnemos.cli.kuberay import app
from mnemos.kuberay import ChartValues, chart_schema, chart_schema_json

from .support import CHART, REPO, run_helm

SCHEMA = CHART / "values.schema.json"
SEED = REPO.parent / "shared" / "seed" / "000_1654d3f2ddd76d2c.txt"
SCHEMA_ERROR = "don't meet the specifications of the schema"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: maps merge, lists and scalars replace, null deletes."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _defaults() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def _documented_values() -> list[tuple[str, dict[str, Any]]]:
    """YAML blocks of the seed and the Kubernetes guide whose top-level keys are all chart sections.

    (docs/guides/jobs.md and docs/scaling.md show MNEMOS settings, not chart values: there
    `numCpus`, `maxWorkers` … are pool keys; in the chart they go under a pool's `settings`.)
    """
    sections = set(_defaults())
    sources = [REPO / "docs" / "guides" / "kubernetes.md"] + ([SEED] if SEED.exists() else [])
    found = []
    for source in sources:
        for i, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", source.read_text(), re.S)):
            try:
                doc = yaml.safe_load(block)
            except yaml.YAMLError:
                continue
            if isinstance(doc, dict) and doc and set(doc) <= sections:
                found.append((f"{source.name}#{i}", doc))
    return found


def _template_file(tmp_path: Path, values: dict[str, Any], *extra: str) -> Any:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return run_helm("template", "mnemos", str(CHART), "-f", str(path), *extra)


def test_checked_in_schema_is_the_generated_one() -> None:
    """Regenerate with `mnemos kuberay chart-schema --out deployments/helm/mnemos/values.schema.json`."""
    assert SCHEMA.read_text() == chart_schema_json()
    result = CliRunner().invoke(app, ["chart-schema"])
    assert result.exit_code == 0 and result.stdout == SCHEMA.read_text()


def test_schema_shares_the_python_rules() -> None:
    from mnemos.kuberay._values import DNS_1035_LABEL, S3_BUCKET

    schema = json.loads(SCHEMA.read_text())
    pool = schema["$defs"]["PoolValues"]
    assert pool["properties"]["name"]["pattern"] == DNS_1035_LABEL and pool["required"] == ["name"]
    assert pool["additionalProperties"] is False
    assert schema["$defs"]["_ObjectStore"]["properties"]["bucket"]["pattern"] == S3_BUCKET
    assert schema["$defs"]["_Service"]["properties"]["port"] == {"maximum": 65535, "minimum": 1, "type": "integer"}


@pytest.mark.parametrize("name", ["values.yaml", "values-dev.yaml"])
def test_shipped_values_pass_the_model(name: str) -> None:
    values = _merge(_defaults(), yaml.safe_load((CHART / name).read_text()))
    ChartValues.model_validate(values)


def test_documented_values_pass_the_schema(tmp_path: Path) -> None:
    documented = _documented_values()
    assert len(documented) >= 3, [n for n, _ in documented]
    for name, doc in documented:
        ChartValues.model_validate(_merge(_defaults(), doc))
        proc = _template_file(tmp_path, doc)
        assert SCHEMA_ERROR not in proc.stderr, f"{name}: {proc.stderr}"


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (("relay.service.port=notaport",), "'/relay/service/port': got string, want integer"),
        (("relay.service.port=70000",), "'/relay/service/port': maximum"),
        (("kuberay.metricsPort=0",), "'/kuberay/metricsPort': minimum"),
        (("neuron.pools[0].name=Bad_Pool",), "'/neuron/pools/0/name': 'Bad_Pool' does not match pattern"),
        (("neuron.pools[0].name=gpu-a", "neuron.pools[0].replicas=-1"), "'/neuron/pools/0/replicas': minimum"),
        # --set on one list item replaces the list: item 0 is null, item 1 has no name.
        (("neuron.pools[1].minReplicas=20",), "'/neuron/pools/1': missing property 'name'"),
        (("neuron.pools[0].name=gpu-a", "neuron.pools[0].minReplica=1"), "additional properties 'minReplica'"),
        (("relay.service.type=Ingress",), "'/relay/service/type'"),
        (("engram.objectStore.bucket=mnemos-artifacts",), "'/engram/objectStore/bucket'"),
        (("soul.masterKey.source=vault",), "'/soul/masterKey/source'"),
        (("global.imageTag=1 evil",), "'/global/imageTag': '1 evil' does not match pattern"),
        (("global.registry=Org/App",), "'/global/registry': 'Org/App' does not match pattern"),
        # Typos, and values that reach the settings ConfigMap and would stop every pod at startup.
        (("relay.servce.port=9000",), "at '/relay': additional properties 'servce' not allowed"),
        (("relay.port=9000",), "at '/relay': additional properties 'port' not allowed"),  # it is relay.service.port
        (("soul.policies.tokenTTL=forever",), "'/soul/policies/tokenTTL': 'forever' does not match pattern"),
        (("soul.jwt.rotateHours=abc",), "'/soul/jwt/rotateHours': got string, want number"),
        (("soul.jwt.rotate=24",), "at '/soul/jwt': additional properties 'rotate' not allowed"),
        (("soul.vault.adress=x",), "at '/soul/vault': additional properties 'adress' not allowed"),
        (("soul.polices.mTLS=disabled",), "at '/soul': additional properties 'polices' not allowed"),
        (("relay.rateLimit.requestsPerSecond=0",), "'/relay/rateLimit/requestsPerSecond': exclusiveMinimum"),
        (("neuron.pools[0].name=gpu-a", "neuron.pools[0].settings.numCpu=1"), "additional properties 'numCpu'"),
        (("neuron.pools[0].name=gpu-a", "neuron.pools[0].settings.idleTimeout=0"), "'/neuron/pools/0/settings/idle"),
        (("cortex.queues.default.backoff.max=soon",), "'/cortex/queues/default/backoff/max'"),
        (("cortex.affinity.gpuPrefered=true",), "at '/cortex/affinity': additional properties 'gpuPrefered'"),
        (("engram.backups.retentionDays=0",), "'/engram/backups/retentionDays': minimum"),
        (("wraith.cronjobs[0].name=nap", "wraith.cronjobs[0].schedule=* * * * *"), "'/wraith/cronjobs/0/name'"),
        (("cradle.guardrails.requireGitops=true",), "additional properties 'requireGitops' not allowed"),
        (("mnemosx.enabled=true",), "at '': additional properties 'mnemosx' not allowed"),
        # An Adapter is checked as GENOME checks it: a literal key where only a secretRef may be went
        # into the GENOME ConfigMap, and the genome-apply Job failed on it after the install.
        (("relay.adapters[0].name=openai", "relay.adapters[0].baseUrl=https://x/v1",
          "relay.adapters[0].auth.apiKey=sk-1"),
         "at '/relay/adapters/0/auth': additional properties 'apiKey' not allowed"),
        (("relay.adapters[0].name=OpenAI", "relay.adapters[0].baseUrl=https://x/v1"), "'/relay/adapters/0/name'"),
        (("relay.adapters[0].name=openai",), "'/relay/adapters/0': missing property 'baseUrl'"),
    ],
)
def test_bad_values_fail_template_and_lint_naming_the_path(sets: tuple[str, ...], expected: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    proc = run_helm("template", "mnemos", str(CHART), *args)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr
    assert "nil pointer" not in proc.stderr
    lint = run_helm("lint", str(CHART), *args)
    assert lint.returncode != 0 and expected in lint.stdout + lint.stderr


@pytest.mark.parametrize(
    "sets",
    [
        ("relay.service.port=9000",),
        ("soul.policies.tokenTTL=2h",),
        ("soul.policies.tokenTTL=90",),
        ("soul.jwt.rotateHours=12",),
        ("global.fromAParentChart=yes",),  # Helm's global is shared with subcharts: any key
        ("cortex.queues.batch.concurrency=4", "cortex.queues.batch.timeout=10m"),
        ("relay.adapters[0].name=openai", "relay.adapters[0].baseUrl=https://x/v1",
         "relay.adapters[0].auth.secretRef.name=llm-keys", "relay.adapters[0].auth.secretRef.key=OPENAI_KEY",
         "relay.adapters[0].routes[0].match=/v1/chat/completions", "relay.adapters[0].routes[0].timeout=60s"),
    ],
)
def test_good_settings_values_render(sets: tuple[str, ...]) -> None:
    proc = run_helm("template", "mnemos", str(CHART), *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == 0, proc.stderr


def test_settings_sections_carry_the_settings_schema() -> None:
    """soul.jwt, soul.vault, relay.rateLimit … are the settings' own models: same keys, none other."""
    from mnemos.config import JwtSettings, RateLimit, VaultSettings

    defs = chart_schema()["$defs"]
    for model in (JwtSettings, VaultSettings, RateLimit):
        assert defs[model.__name__]["additionalProperties"] is False
        assert set(defs[model.__name__]["properties"]) == {f.alias for f in model.model_fields.values()}
    for name in ("_Relay", "_Soul", "_Policies", "_PoolSettings", "_CronJob", "EngramBackups", "Affinity"):
        assert defs[name]["additionalProperties"] is False, name
    schema = chart_schema()
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["_Global"]["additionalProperties"] is True


@pytest.mark.parametrize("text", ["0", "1h", "1.5h", " 30 s ", "500ms", "2d", "90"])
def test_duration_pattern_takes_what_the_settings_take(text: str) -> None:
    from mnemos.config import load_settings
    from mnemos.kuberay._chart import DURATION_PATTERN

    assert re.fullmatch(DURATION_PATTERN, text)
    load_settings(soul={"policies": {"tokenTTL": text}})


@pytest.mark.parametrize("text", ["forever", "-1s", "1w", "1h30m", "", "1e3"])
def test_duration_pattern_refuses_what_the_settings_refuse(text: str) -> None:
    from mnemos.config import load_settings
    from mnemos.errors import ValidationError
    from mnemos.kuberay._chart import DURATION_PATTERN

    assert not re.fullmatch(DURATION_PATTERN, text)
    with pytest.raises(ValidationError):
        load_settings(soul={"policies": {"tokenTTL": text}})


POOL = {"name": "gpu-a", "replicas": 1, "minReplicas": 0, "maxReplicas": 3}


@pytest.mark.parametrize(
    ("pools", "expected"),
    [
        (
            [{**POOL, "minReplicas": 20, "maxReplicas": 10}],
            "neuron.pools[0].minReplicas: 20 is greater than maxReplicas 10 of pool",
        ),
        (
            [{"name": "gpu-a", "minReplicas": 5}],  # maxReplicas defaults to replicas, neuron.replicas (3)
            "neuron.pools[0].minReplicas: 5 is greater than maxReplicas 3 (default: replicas) of pool",
        ),
        (
            [POOL, {**POOL, "name": "cpu-a"}, POOL],
            "neuron.pools[2].name: 'gpu-a' is also neuron.pools[0].name; pool names must be unique",
        ),
    ],
    ids=["min-above-max", "min-above-default-max", "duplicate-names"],
)
def test_template_checks_what_the_schema_cannot(tmp_path: Path, pools: list[dict[str, Any]], expected: str) -> None:
    values = {"neuron": {"pools": pools}}
    proc = _template_file(tmp_path, values)
    assert proc.returncode != 0
    assert expected.replace("'", '"') in proc.stderr, proc.stderr
    # The Python model refuses the same values with the same message.
    with pytest.raises(PydanticValidationError) as info:
        ChartValues.model_validate(_merge(_defaults(), values))
    assert expected in str(info.value)


def test_keda_pools_keep_their_own_bounds(tmp_path: Path) -> None:
    """A KEDA-scaled pool's bounds default to neuron.keda.scaledObject's, not to replicas."""
    resources = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}}
    pool = {"name": "cpu-a", "minReplicas": 5, "resources": resources}
    values = {"neuron": {"keda": {"enabled": True}, "pools": [pool]}}
    ChartValues.model_validate(_merge(_defaults(), values))
    assert _template_file(tmp_path, values).returncode == 0
