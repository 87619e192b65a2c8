"""The multi-node scenario, run as its own driver (a process connects to one Ray cluster at a time).

    python tests/multinode/driver.py OUT_JSON

Builds a real multi-node Ray cluster on this machine with ``ray.cluster_utils.Cluster``: a head
labelled ``accelerator: nvidia`` with one (logical) GPU, standing for a GPU node, and two worker
nodes labelled ``accelerator: cpu``. Runs CORTEX with a ``cpu-a`` and a ``gpu-a`` pool and RELAY
(Serve's proxy on the head) serving an ``echo`` Model whose two replicas a ``resources.selector``
keeps on the ``cpu`` nodes. Kills a node that hosts a ``cpu-a`` worker and a model replica while
200 jobs run, follows the gateway until the replica is replaced on a live node and requests
succeed, reads ``mnemos status`` (the CLI, through the gateway's ``/v1/status``) before, after the
kill and after a node is added back, and writes what it saw to OUT_JSON for the test to judge.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

T = "mnemos.cortex.testing"
MODEL = "mn-echo"
MODEL_REPLICAS = 2  # Serve spreads them: one on each cpu node, so the killed node hosts one
MODEL_WAIT_S = 240.0  # how long the driver follows the model's recovery (the test's bound is tighter)
STATUS_WAIT_S = 30.0  # how long `mnemos status` may still show a killed node alive


def _retry(start: Callable[[], Any], tries: int = 3) -> Any:
    """Start a Ray node, again when it timed out (Ray waits 30 s for a raylet; a loaded machine can be slower)."""
    for attempt in range(tries):
        try:
            return start()
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception on that timeout
            if "timed out during startup" not in str(exc) or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_gateway(settings: Any, client: Any) -> None:
    """RELAY with Serve's proxy on the head only (every node here shares one IP, so one proxy per
    node would fight over the port), and the echo Model, placed on ``accelerator: cpu`` nodes."""
    import ray
    from ray import serve

    from mnemos.relay import ensure

    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": settings.relay.port})
    controller = ensure(settings, client.engram)
    client.apply([{
        "apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": MODEL},
        "spec": {"family": "test", "version": "1", "artifact": {"uri": "file:///dev/null"},
                 "runtime": {"engine": "echo"}, "replicas": MODEL_REPLICAS,
                 "resources": {"cpus": 0.1, "selector": {"accelerator": "cpu"}}},
    }])  # fmt: skip
    ray.get(controller.wait_synced.remote(None, 240.0), timeout=300)


def _replica_nodes() -> list[str]:
    """The node of each model replica that answers (a replica on a dead node does not)."""
    import ray

    def node_of(_replica: Any) -> str:
        return ray.get_runtime_context().get_node_id()

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::model-{MODEL}#")]  # fmt: skip
    nodes = []
    for name in names:
        try:
            nodes.append(ray.get(ray.get_actor(name, namespace="serve").__ray_call__.remote(node_of), timeout=10))
        except Exception:  # noqa: BLE001 - dead or not started yet: not a serving replica
            continue
    return sorted(nodes)


def _ask(url: str) -> bool:
    """One chat completion through the gateway with the official client: True when the echo came back."""
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=15)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "still here"}]
        )
    except openai.OpenAIError:
        return False
    try:
        answer = raw.parse()
    except ValueError as exc:  # a 2xx whose body is not a completion is the gateway's bug, not a refusal
        status = raw.http_response.status_code
        raise RuntimeError(f"HTTP {status} with a body that is not a completion: {raw.text[:500]!r}") from exc
    return "here" in (answer.choices[0].message.content or "")


def _follow_model(url: str, victim: str, alive: Callable[[], set[str]]) -> dict[str, Any]:
    """After the kill: seconds until the model has all its replicas on live nodes, none on the
    victim, and a request through the gateway succeeds; and how many requests failed meanwhile."""
    started = time.monotonic()
    failed = asked = 0
    nodes: list[str] = []
    while time.monotonic() - started < MODEL_WAIT_S:
        ok = _ask(url)
        asked += 1
        failed += not ok
        nodes = _replica_nodes()
        if ok and len(nodes) == MODEL_REPLICAS and victim not in nodes and set(nodes) <= alive():
            return {"seconds": round(time.monotonic() - started, 1), "asked": asked, "failed": failed, "nodes": nodes}
        time.sleep(0.5)
    return {"seconds": None, "asked": asked, "failed": failed, "nodes": nodes}


def _cli_status(url: str) -> list[dict[str, Any]]:
    """``mnemos status -o json`` as a user runs it against the gateway: the nodes it lists."""
    from typer.testing import CliRunner

    from mnemos.cli import app

    result = CliRunner().invoke(app, ["status", "-o", "json"], env={"MNEMOS_URL": url})
    if result.exit_code != 0:
        raise RuntimeError(f"mnemos status failed ({result.exit_code}): {result.output[-2000:]}")
    try:
        return list(json.loads(result.stdout)["nodes"])
    except ValueError as exc:
        raise RuntimeError(f"mnemos status -o json printed no JSON: {result.output[-2000:]!r}") from exc


def main(out: str) -> None:
    home = tempfile.mkdtemp(prefix="mnemos-multinode-")
    os.environ["MNEMOS_HOME"] = home
    os.environ.pop("RAY_ADDRESS", None)
    import ray
    from ray.cluster_utils import Cluster

    from mnemos.client import Client
    from mnemos.config import load_settings
    from mnemos.cortex import read_records

    head = {"num_cpus": 2, "num_gpus": 1, "labels": {"accelerator": "nvidia"}, "include_dashboard": False}
    cluster = _retry(lambda: Cluster(initialize_head=True, head_node_args=head))
    nodes = [_retry(lambda: cluster.add_node(num_cpus=2, labels={"accelerator": "cpu"})) for _ in range(2)]
    cluster.wait_for_nodes(timeout=300)
    report: dict[str, object] = {}
    try:
        ray.init(address=cluster.address, namespace="mnemos", log_to_driver=False)
        url = f"http://127.0.0.1:{(port := _free_port())}"
        settings = load_settings(
            engram={"uri": f"{home}/engram"},
            relay={"port": port, "auth": False},
            cortex={"queues": {"default": {"concurrency": 100, "backoff": {"min": "100ms", "max": "400ms"}}}},
            neuron={"pools": [
                {"name": "cpu-a", "selector": {"accelerator": "cpu"}, "size": 2, "numCpus": 0.5, "maxConcurrency": 8},
                {"name": "gpu-a", "selector": {"accelerator": "nvidia"}, "size": 1, "numCpus": 0, "numGpus": 1},
            ]},
        )  # fmt: skip
        jobs = Client(settings, connected=True).jobs
        labels = {n["NodeID"]: (n.get("Labels") or {}).get("accelerator") for n in ray.nodes() if n["Alive"]}

        def placement() -> dict[str, list[tuple[str, str]]]:
            workers = ray.get(jobs.cortex.workers.remote())
            pings = ray.get([w["handle"].ping.remote() for w in workers], timeout=120)
            out: dict[str, list[tuple[str, str]]] = {}
            for ping in pings:
                out.setdefault(ping["pool"], []).append((ping["name"], ping["node"]))
            return out

        where = placement()
        report["placement"] = {pool: sorted({labels[node] for _, node in ws}) for pool, ws in where.items()}
        report["gpuJobNode"] = labels.get(jobs.submit(f"{T}:node_id", resources={"gpus": 1}).result(timeout=180))
        victim_node = where["cpu-a"][0][1]
        victim = next(n for n in nodes if n.node_id == victim_node)
        _start_gateway(settings, jobs.client)
        model_nodes = _replica_nodes()
        report["modelPlacement"] = sorted(labels[node] for node in model_nodes)
        report["modelOnVictim"] = victim_node in model_nodes
        report["modelAnswersBeforeKill"] = _ask(url)
        report["statusBeforeKill"] = _cli_status(url)
        handles = jobs.submit_many(f"{T}:stamp", [(0.2, i) for i in range(200)], resources={"pool": "cpu-a"})
        for _ in range(1200):  # kill the node mid-run: once some jobs are done and most are not
            if jobs.stats()["jobs"]["succeeded"] >= 20:
                break
            time.sleep(0.05)
        report["succeededBeforeKill"] = jobs.stats()["jobs"]["succeeded"]
        cluster.remove_node(victim, allow_graceful=False)
        started = time.monotonic()

        def alive() -> set[str]:
            return {n["NodeID"] for n in ray.nodes() if n["Alive"]}

        report["modelRecovery"] = _follow_model(url, victim_node, alive)  # the jobs keep running meanwhile
        report["modelPlacementAfterLoss"] = sorted(labels.get(n, "gone") for n in report["modelRecovery"]["nodes"])
        # The gateway's Ray client learns of the node's death on its own (GCS pubsub): a bounded wait.
        deadline = time.monotonic() + STATUS_WAIT_S
        while True:
            report["statusAfterKill"] = _cli_status(url)
            gone = {n["id"]: n["state"] for n in report["statusAfterKill"]}.get(victim_node) == "dead"
            if gone or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        results = jobs.results(handles, timeout=600)
        report["recoverySeconds"] = round(time.monotonic() - started, 1)
        report["values"] = [r["value"] for r in results]
        records = read_records(jobs.client.engram)
        ids = {h.id for h in handles}
        report["resultRecords"] = sorted(
            set(Counter(r["id"] for r in records if r.get("t") == "result" and r["id"] in ids).values())
        )
        report["lostRetries"] = sum(1 for r in records if r.get("t") == "retry" and "was lost" in str(r.get("error")))
        report["placementAfterLoss"] = {
            pool: sorted({labels.get(node, "gone") for _, node in ws}) for pool, ws in placement().items()
        }
        back = _retry(lambda: cluster.add_node(num_cpus=2, labels={"accelerator": "cpu"}))
        cluster.wait_for_nodes(timeout=300)
        report["victim"] = victim_node
        report["nodeBack"] = back.node_id
        report["statusAfterNodeBack"] = _cli_status(url)
        report["afterNodeBack"] = jobs.results(jobs.submit_many(f"{T}:add", [(i, 1) for i in range(20)]), timeout=300)
    except BaseException:
        report["error"] = traceback.format_exc()  # whole: the test shows it, stderr's tail may be Ray's noise
        raise
    finally:
        with open(out, "w") as fh:
            json.dump(report, fh)
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
