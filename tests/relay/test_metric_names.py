"""Every metric the chart's dashboards and alert rules read is exported by a live gateway's /metrics.

The names come from the files the chart ships (dashboards/*.json and templates/prometheusrule.yaml),
so a renamed metric or a dashboard naming one that MNEMOS never exports fails here. Traffic that
makes each series appear is sent first: chat completions (plain and streamed), jobs that succeed,
fail and retry, NEURON workers that die and are replaced, a pipeline run and
an ENGRAM blob written and read.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import yaml
from relay_support import Relay
from tests_support import REPO

CHART = REPO / "deployments" / "helm" / "mnemos"
# Series of these exist only where GPUs do: on a node without GPUs, mnemos_neuron_gpus says 0.
GPU_ONLY = {"mnemos_neuron_gpu_memory_used_bytes", "mnemos_neuron_gpu_memory_total_bytes"}


def _chart_metric_names() -> set[str]:
    """Metric names in the chart's dashboards and rules (recording-rule names contain ':')."""
    text = "".join(p.read_text() for p in sorted((CHART / "dashboards").glob("*.json")))
    text += (CHART / "templates" / "prometheusrule.yaml").read_text()
    return set(re.findall(r"\bmnemos_[a-z0-9_]+\b", text))


def _family(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _samples(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            out.setdefault(name, []).append(line)
    return out


def _traffic(relay: Relay, folder: Path) -> None:
    client = relay.openai()
    for _ in range(3):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello metrics"}])
    stream = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "stream please"}], stream=True
    )
    assert [c for c in stream]
    jobs = relay.client.jobs
    assert jobs.submit(sum, [1, 2, 3]).result(timeout=240) == 6
    failing = jobs.submit("json:loads", "{not json", max_attempts=2)  # fails twice: a retry, then failed
    with pytest.raises(Exception, match="JSONDecodeError"):
        failing.result(timeout=240)
    # NEURON workers die: the next job sent to one fails over, and its pool replaces the worker.
    workers = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("neuron-")]
    assert workers
    for worker in workers:
        ray.kill(ray.get_actor(worker["name"], namespace=worker["namespace"]), no_restart=True)
    assert jobs.submit(sum, [4, 5]).result(timeout=240) == 9
    pipeline = {
        "apiVersion": "synkron.mnemos.dev/v1",
        "kind": "Pipeline",
        "metadata": {"name": "metric-names"},
        "spec": {"steps": [{"name": "pair", "call": "builtins:dict", "params": {"a": 2, "b": 3},
                            "outputs": [{"name": "pair"}]}]},
    }  # fmt: skip
    path = folder / "metric-names.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    run = relay.client.pipelines.run(str(path), progress=False, timeout=240)
    assert run.status() == "succeeded", run.state().get("error")
    engram = relay.client.engram  # an artifact written and read back (ENGRAM's blob operations)
    assert engram.get(engram.put(b"metric names")) == b"metric names"


@pytest.fixture(scope="module")
def exported(relay: Relay, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _traffic(relay, tmp_path_factory.mktemp("metric-names"))
    wanted = {_family(n) for n in _chart_metric_names()} - GPU_ONLY
    deadline = time.monotonic() + 60  # processes push their metrics every second
    while True:
        text = httpx.get(f"{relay.url}/metrics", timeout=30).text
        samples = _samples(text)
        missing = {n for n in wanted if not any(_family(s) == n or s == n for s in samples)}
        if not missing or time.monotonic() > deadline:
            return {"text": text, "samples": samples, "missing": missing}
        time.sleep(1)


def test_the_chart_names_metrics_at_all() -> None:
    names = _chart_metric_names()
    assert {"mnemos_relay_requests_total", "mnemos_cortex_queue_depth", "mnemos_jobs_total"} <= names
    assert names >= GPU_ONLY


def test_every_metric_in_dashboards_and_rules_has_series_on_a_live_gateway(exported: dict[str, Any]) -> None:
    assert not exported["missing"], f"named by the chart but not exported: {sorted(exported['missing'])}"
    samples = exported["samples"]
    for name in _chart_metric_names():  # the exact sample names too (_bucket of a histogram, _total)
        if _family(name) not in GPU_ONLY:
            assert name in samples, name
    statuses = " ".join(samples["mnemos_jobs_total"])
    assert 'status="succeeded"' in statuses and 'status="failed"' in statuses
    assert any('status="ran"' in s for s in samples["mnemos_synkron_steps_total"])
    assert 'le="0.5"' in " ".join(samples["mnemos_relay_request_seconds_bucket"])  # the SLO's bucket


def test_gpu_memory_is_declared_and_has_series_exactly_where_gpus_are(exported: dict[str, Any]) -> None:
    text, samples = exported["text"], exported["samples"]
    for name in GPU_ONLY:
        assert f"# TYPE {name} gauge" in text
    gpus = sum(float(line.rsplit(" ", 1)[1]) for line in samples["mnemos_neuron_gpus"])
    has_memory = all(name in samples for name in GPU_ONLY)
    assert has_memory == (gpus > 0), f"{gpus} GPUs but memory series {'present' if has_memory else 'absent'}"
