"""The `genome` control-plane actor and the connected client publishing to it."""

from __future__ import annotations

import threading

import ray
from tests_support import model_doc

import mnemos


def test_connected_apply_publishes_and_watch_wakes(ray_cluster, settings) -> None:
    client = mnemos.connect(settings=settings)
    genome = ray.get_actor("genome", namespace="mnemos")
    start = ray.get(genome.revision.remote())
    result: dict = {}

    def watcher() -> None:
        result.update(ray.get(genome.watch.remote(start, 60)))

    thread = threading.Thread(target=watcher)
    thread.start()
    client.apply(model_doc("watched"))
    thread.join(90)
    assert result["events"][0]["name"] == "watched" and result["events"][0]["action"] == "created"
    assert result["revision"] == start + 1
    # unchanged applies publish nothing
    client.apply(model_doc("watched"))
    assert ray.get(genome.revision.remote()) == start + 1
    client.delete("Model", "watched")
    later = ray.get(genome.watch.remote(start + 1, 5))
    assert [e["action"] for e in later["events"]] == ["deleted"]


def test_watch_from_the_future_asks_to_relist(ray_cluster, settings) -> None:
    mnemos.connect(settings=settings)
    genome = ray.get_actor("genome", namespace="mnemos")
    now = ray.get(genome.revision.remote())
    assert ray.get(genome.watch.remote(now + 50, 1))["events"] is None


def test_remote_apply_through_the_actor(ray_cluster, settings) -> None:
    mnemos.connect(settings=settings)
    genome = ray.get_actor("genome", namespace="mnemos")
    out = ray.get(genome.apply.remote(model_doc("remote")))
    assert out["action"] in ("created", "configured")
    assert ray.get(genome.get.remote("Model", "remote"))["metadata"]["name"] == "remote"
