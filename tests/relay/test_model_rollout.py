"""A new generation of a Model rolls out under steady traffic with no failed request and no gap.

A client sends chat completions one after another while a changed Model is applied. The model
runs the ``transformers`` runtime on the tiny model, so a new replica takes seconds to start
(importing torch, loading the weights): long enough to see whether the old replica keeps
serving meanwhile (Serve's ``max_surge_percent``) or is stopped first, leaving requests waiting.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import ray
from relay_support import MODEL_SERVER, Relay, wait_until
from tests_support import model_doc, until

from mnemos.trace import events

NAME = "rolling"


def _doc(ref: str, max_tokens: int) -> dict[str, Any]:
    params = {"dtype": "float32", "maxTokens": max_tokens}
    return model_doc(NAME, "transformers", artifact={"uri": f"engram://{ref}"}, resources={"cpus": 0.1},
                     runtime={"engine": "transformers", "params": params})  # fmt: skip


class _Traffic(threading.Thread):
    """Chat completions one after another until stopped: ``(start, end, status)`` of each."""

    def __init__(self, url: str, limit_s: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.deadline = time.monotonic() + limit_s  # bounded even if the test never stops it
        self.stop = threading.Event()
        self.results: list[tuple[float, float, int | str]] = []

    def run(self) -> None:
        body = {"model": NAME, "messages": [{"role": "user", "content": "roll on"}], "max_tokens": 4}
        with httpx.Client(timeout=120) as http:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                start = time.monotonic()
                try:
                    status: int | str = http.post(f"{self.url}/v1/chat/completions", json=body).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.results.append((start, time.monotonic(), status))


def _replica_states(app: str) -> dict[str, int]:
    from ray import serve

    status = serve.status().applications.get(app)
    deployment = status.deployments.get(MODEL_SERVER) if status else None
    states = getattr(deployment, "replica_states", None) or {}
    return {str(getattr(k, "value", k)).rsplit(".", 1)[-1]: int(v) for k, v in states.items()}


def test_generation_change_under_steady_traffic(relay: Relay, tiny_chat_ref: str) -> None:
    first = relay.apply(_doc("models/tiny-chat", 8))["models"][NAME]
    assert first["status"] == "ready", first
    traffic = _Traffic(relay.url, limit_s=600)
    traffic.start()
    try:
        time.sleep(1.0)
        relay.client.apply([_doc("models/tiny-chat", 9)])  # a spec change: a new generation
        # While the new replica starts, note when one is STARTING and one RUNNING (both generations up).
        overlap: list[tuple[float, float]] = []

        def current() -> dict[str, Any]:  # the model's status, noting a moment with both generations up
            seen = time.monotonic()
            states = _replica_states(f"model-{NAME}")
            if states.get("STARTING") and states.get("RUNNING"):
                overlap.append((seen, time.monotonic()))
            return dict(ray.get(relay.controller.status.remote())["models"].get(NAME, {}))

        wanted = (first["generation"] + 1, "ready")
        until(current, "the new generation", ready=lambda now: (now.get("generation"), now.get("status")) == wanted,
              timeout=300, interval=0.1)  # fmt: skip
        time.sleep(1.0)  # traffic on the new generation too
    finally:
        traffic.stop.set()
        traffic.join(timeout=150)
    results = traffic.results
    failed = [r for r in results if r[2] != 200]
    assert not failed, failed[:5]
    assert len(results) >= 10, results
    # The old replica kept serving while the new one started: requests were answered in that window.
    assert overlap, "no moment with the new replica starting next to a running old one"
    window = (overlap[0][0], overlap[-1][1])
    served_meanwhile = [r for r in results if window[0] <= r[0] and r[1] <= window[1]]
    assert served_meanwhile, (window, results[:20])
    card = httpx.get(f"{relay.url}/v1/models/{NAME}").json()
    assert card["mnemos"]["generation"] == first["generation"] + 1
    # The model stays for test_status_counts_live_replicas (one replica starting costs seconds here).


def test_status_counts_live_replicas(relay: Relay, tiny_chat_ref: str) -> None:
    """READY/REPLICAS come from Serve, not the spec: a replica that dies shows as 0 of 1 ready until Serve
    replaces it (the transformers runtime takes seconds to start), over HTTP, in ENGRAM and in `mnemos get model`."""
    from mnemos.cli.resources import _model_row
    from mnemos.relay.model_status import read_status

    assert relay.apply(_doc("models/tiny-chat", 9))["models"][NAME]["status"] == "ready"  # as the test above left it

    def card() -> dict[str, Any]:
        return httpx.get(f"{relay.url}/v1/models/{NAME}", timeout=30).json()["mnemos"]["status"]  # type: ignore[no-any-return]

    def when(read: Any, wanted: tuple[int, int]) -> Any:
        record = read() or {}
        return record if (record.get("ready_replicas"), record.get("desired_replicas")) == wanted else None

    assert wait_until(lambda: when(card, (1, 1)), timeout=60)
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True)
                if a["name"].startswith(f"SERVE_REPLICA::model-{NAME}#")]  # fmt: skip
    assert len(replicas) == 1, replicas
    after = ray.get(events.bus().last.remote())
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True)
    try:
        status = wait_until(lambda: when(card, (0, 1)), timeout=60, interval=0.05)
        assert (status["phase"], status["reason"]) == ("Deploying", "NoReadyReplica"), status  # not Ready: none runs
        record = wait_until(lambda: when(lambda: read_status(relay.client.engram, NAME), (0, 1)), 30, 0.05)
        model = relay.client.get("Model", NAME)
        assert _model_row(model, record)[3:] == ("False", "0/1", "NoReadyReplica")  # READY, REPLICAS, REASON
        status = wait_until(lambda: when(card, (1, 1)), timeout=120)  # Serve replaced it
        assert (status["phase"], status["reason"]) == ("Ready", "Ready"), status
        # Each change was announced, so a console page and `mnemos get models --watch` follow it live.
        events.flush()
        seen = [(e["data"]["phase"], e["data"]["ready_replicas"], e["data"]["desired_replicas"])
                for e in events.watch(["model.status"], subject=f"model/{NAME}", after=after, timeout=3)
                if e["type"] == "model.status"]  # fmt: skip
        assert ("Deploying", 0, 1) in seen and seen[-1] == ("Ready", 1, 1), seen
    finally:
        relay.delete("Model", NAME)
