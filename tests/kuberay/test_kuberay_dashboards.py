"""The chart's operator dashboards and rules (``trace.dashboards``): Grafana dashboard ConfigMaps for the
sidecar, a PrometheusRule that `promtool check rules` accepts, a ServiceMonitor for RELAY's /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .support import CHART, by_kind, helm_template, one, run_helm

ON = ("trace.dashboards=enabled",)
COMPONENTS = {"gateway", "models", "cortex", "pipelines", "engram"}
SEED_ALERTS = {"HighErrorRate", "GPUMemoryExhaustion", "CortexQueueBacklog"}
SLO_ALERTS = {"CortexAvailabilityBudgetBurn", "JobSuccessBudgetBurn", "RelayLatencyBudgetBurn"}


def _rule_groups(*sets: str) -> dict[str, Any]:
    return one(helm_template(sets=(*ON, *sets)), "PrometheusRule")["spec"]


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; `make install` installs it)")
    return found


def test_off_by_default_and_on_when_enabled() -> None:
    kinds = {o["kind"] for o in helm_template()}
    assert "PrometheusRule" not in kinds
    assert not [o for o in by_kind(helm_template(), "ConfigMap") if "-dashboard-" in o["metadata"]["name"]]
    for value in ("enabled", "true"):
        objects = helm_template(sets=(f"trace.dashboards={value}",))
        assert by_kind(objects, "PrometheusRule"), value


def test_one_dashboard_configmap_per_component_for_the_grafana_sidecar() -> None:
    maps = [o for o in by_kind(helm_template(sets=ON), "ConfigMap") if "-dashboard-" in o["metadata"]["name"]]
    assert {m["metadata"]["name"].rsplit("-", 1)[1] for m in maps} == COMPONENTS
    uids = set()
    for cm in maps:
        kubernetes_validate.validate(cm, "1.30", strict=True)
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "MNEMOS"
        ((key, text),) = cm["data"].items()
        assert key.endswith(".json")
        board = json.loads(text)
        uids.add(board["uid"])
        assert board["panels"], key
        for panel in board["panels"]:
            assert panel["targets"] and all(re.search(r"\bmnemos_", t["expr"]) for t in panel["targets"]), panel[
                "title"
            ]
            assert panel["datasource"]["uid"] == "${datasource}"
    assert len(uids) == len(maps), "dashboard uids must be unique"


def test_rules_carry_the_seed_alerts_and_slo_burn_rates() -> None:
    spec = _rule_groups()
    alerts = {r["alert"]: r for g in spec["groups"] for r in g["rules"] if "alert" in r}
    assert set(alerts) >= SEED_ALERTS | SLO_ALERTS
    assert alerts["HighErrorRate"]["labels"]["severity"] == "critical" and alerts["HighErrorRate"]["for"] == "5m"
    assert alerts["GPUMemoryExhaustion"]["for"] == "10m" and "> 0.95" in alerts["GPUMemoryExhaustion"]["expr"]
    burns = [r for g in spec["groups"] for r in g["rules"] if r.get("alert") in SLO_ALERTS]
    assert {(r["alert"], r["labels"]["severity"]) for r in burns} == {
        (a, s) for a in SLO_ALERTS for s in ("critical", "warning")
    }
    windows = {r["alert"]: r["labels"]["slo_window"] for r in burns}
    assert windows == {
        "CortexAvailabilityBudgetBurn": "30d",
        "JobSuccessBudgetBurn": "7d",
        "RelayLatencyBudgetBurn": "24h",
    }
    fast = {r["alert"]: r["expr"] for r in burns if r["labels"]["severity"] == "critical"}
    assert "> 0.0144" in fast["CortexAvailabilityBudgetBurn"]  # 14.4 x (1 - 0.999): 2% of 30 days' budget in 1h
    assert "> 0.0168" in fast["JobSuccessBudgetBurn"]  # 3.36 x (1 - 0.995): 2% of 7 days' budget in 1h
    recorded = {r["record"]: r["expr"] for g in spec["groups"] for r in g["rules"] if "record" in r}
    assert 'le="0.5"' in recorded["mnemos:relay_slow:ratio_rate1h"]  # the 500 ms bucket


@pytest.mark.parametrize("sets", [(), ("trace.slos.jobSuccess.window=14d", "trace.rules.queueBacklog.depth=7")])
def test_promtool_accepts_the_rendered_rules(tmp_path: Path, sets: tuple[str, ...]) -> None:
    promtool = _promtool()
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(_rule_groups(*sets)))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_a_window_in_other_units_is_refused_clearly() -> None:
    args = [
        "template",
        "m",
        str(CHART),
        "--set",
        "trace.dashboards=enabled",
        "--set",
        "trace.slos.jobSuccess.window=1w",
    ]
    proc = run_helm(*args)
    assert proc.returncode != 0 and 'window "1w": write it in days (30d) or hours (24h)' in proc.stderr


def test_relay_metrics_are_scraped_from_the_gateway_service() -> None:
    objects = helm_template(sets=ON)
    monitor = one(objects, "ServiceMonitor", "-relay")
    assert monitor["spec"]["endpoints"] == [{"port": "serve", "path": "/metrics", "interval": "30s"}]
    service = one(objects, "RayService")["spec"]["serveService"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {"name": "serve", "port": 8080, "targetPort": "serve", "protocol": "TCP"} in service["spec"]["ports"]
