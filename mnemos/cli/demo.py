"""``mnemos demo``: the main job, end to end, on an embedded local platform.

Brings the platform up in this process (a local Ray cluster, the control plane, the gateway),
makes the tiny chat model and stores it in ENGRAM, applies ``deployments/local/``, runs
``pipelines/text-gen-artifacts.yaml`` with progress, asks the gateway one chat question with the
official ``openai`` client, searches the indexed results by meaning, prints the run's lineage,
and brings everything down. ``make demo`` runs it with ``MNEMOS_HOME=build/demo-home``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from mnemos.cli._output import console

__all__ = ["DEPLOYMENTS", "PIPELINE", "QUESTION", "demo", "register"]

PIPELINE = "pipelines/text-gen-artifacts.yaml"
DEPLOYMENTS = "deployments/local"
QUESTION = "How do plants turn sunlight into food?"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def _repo_path(relative: str) -> Path:
    """``relative`` under the working directory, else under the checkout this package lives in."""
    here = Path(relative)
    if here.exists():
        return here
    import mnemos

    return Path(mnemos.__file__).resolve().parent.parent / relative


def _settings() -> Any:
    from mnemos.config import load_settings
    from mnemos.cradle.cluster import free_port, port_in_use

    settings = load_settings()
    if port_in_use(settings.relay.host, settings.relay.port):
        port = free_port()
        console.print(f"port {settings.relay.port} is busy: the gateway listens on {port}")
        settings = load_settings(relay={"port": port})
    return settings


def _step(title: str) -> float:
    console.rule(Text(title, style="bold"))
    return time.monotonic()


def _platform_up(settings: Any) -> Any:
    import mnemos
    from mnemos.cortex import ensure as ensure_cortex
    from mnemos.cradle import up
    from mnemos.relay import ensure as ensure_relay
    from mnemos.synkron.service import ensure as ensure_synkron

    client = mnemos.connect(settings=settings)
    components = up(settings, client.engram)
    ensure_cortex(settings, client.engram)
    ensure_synkron(settings, client.engram)
    controller = ensure_relay(settings, client.engram)
    console.print(f"ray: embedded local cluster · engram: {client.engram.uri}")
    console.print(f"control plane: {', '.join(dict.fromkeys([*components, 'cortex', 'synkron', 'relay']))}")
    console.print(f"gateway: http://{settings.relay.host}:{settings.relay.port}/v1")
    return client, controller


def _tiny_model(client: Any) -> str:
    from mnemos.config import default_home
    from mnemos.neuron.models import init_tiny, store_model

    folder = default_home() / "models" / "tiny-chat"
    if not (folder / "config.json").exists():
        init_tiny(folder, seed=0)
    digest = store_model(client.engram, folder, "tiny-chat")
    console.print(f"tiny-chat: {folder} stored in ENGRAM as models/tiny-chat → {digest}")
    return digest


def _api_key(client: Any) -> tuple[str, Any]:
    """A short-lived API key for the demo's request (revoked at the end); ``unused`` without auth."""
    if not client.settings.relay.auth:
        return "unused", None
    from mnemos.soul.store import IdentityStore

    store = IdentityStore.from_settings(client.settings, client.engram)
    created = store.create_api_key("demo", "developer", ttl=3600, actor="mnemos-demo")
    return created.secret, (store, created.id)


def _chat(client: Any) -> None:
    import openai

    settings = client.settings
    key, issued = _api_key(client)
    try:
        api = openai.OpenAI(
            base_url=f"http://{settings.relay.host}:{settings.relay.port}/v1", api_key=key, max_retries=2
        )
        reply = api.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": QUESTION}],
                                            max_tokens=24, temperature=0.7)  # fmt: skip
    finally:
        if issued is not None:
            store, key_id = issued
            store.revoke(key_id, actor="mnemos-demo")
    console.print(f"user: {QUESTION}")
    console.print(f"tiny-chat: {reply.choices[0].message.content!r}")
    tokens = reply.usage.total_tokens if reply.usage else "?"
    console.print(f"(a tiny random model: the words are noise, the path is real; usage {tokens} "
                  f"tokens, id {reply.id})", style="dim")  # fmt: skip


def _search(client: Any) -> list[dict[str, Any]]:
    from rich.table import Table

    hits = client.spaces.search("llm-dev", QUESTION, k=3)
    table = Table("score", "id", "prompt", "tiny-chat's output", title=f"space llm-dev · {QUESTION!r}")
    for hit in hits:
        table.add_row(f"{hit['score']:.3f}", hit["id"], hit["text"], hit["fields"].get("output", "")[:40])
    console.print(table)
    return hits


def _usage(since: float) -> None:
    """What the run's model steps and the chat request were charged: the usage ledger's rows for the
    hour (it keeps one row per hour, principal, team and model, so earlier runs in the hour count)."""
    import ray
    from rich.table import Table

    from mnemos.relay.usage_http import aggregate
    from mnemos.soul.ratelimit import ensure

    time.sleep(0.5)  # the gateway reports settled requests in batches, a fraction of a second apart
    body = aggregate(ray.get(ensure().usage.remote(since, None)), ("principal", "model"))
    title = "usage ledger, this hour (GET /v1/usage; kept per hour)"
    table = Table("principal", "model", "requests", "prompt", "completion", title=title)
    for e in body["data"]:
        table.add_row(e["principal"], e["model"], str(e["requests"]), str(e["prompt_tokens"]),
                      str(e["completion_tokens"]))  # fmt: skip
    console.print(table)


def _lineage(client: Any, run_id: str, item: str) -> None:
    from rich.console import Console

    from mnemos.trace.lineage import render_tree

    wide = Console(highlight=False, width=None if console.is_terminal else 200)
    wide.print(render_tree(client.lineage(f"run:{run_id}")))
    nodes = client.lineage(item)["nodes"]
    files = [n["id"] for n in nodes if n["id"].startswith("file:")]
    models = [f"{n['id']} ({n['attrs'].get('digest')})" for n in nodes if n["id"].startswith("model:")]
    console.print(f"{item} came from {', '.join(files)} through {', '.join(models)}")


def demo() -> None:
    """The main job: up, model, apply, pipeline, chat, usage, search, lineage, down."""
    import ray

    from mnemos.cli.platform import quiet_ray, quiet_serve_narration
    from mnemos.cradle import down
    from mnemos.synkron.steps import StepFailedError

    started = time.monotonic()
    quiet_serve_narration()  # the demo narrates; Serve need not
    settings = _settings()
    _step("1. platform up")
    client, controller = _platform_up(settings)
    try:
        _step("2. the tiny chat model")
        _tiny_model(client)
        _step(f"3. apply {DEPLOYMENTS}/")
        for result in client.apply(_repo_path(DEPLOYMENTS)):
            console.print(str(result))
        status = ray.get(controller.wait_synced.remote(None, 900))
        for name, route in sorted(status.get("models", {}).items()):
            reason = f", {route['reason']}: {route.get('message')}" if route.get("status") != "ready" else ""
            console.print(f"model {name}: {route.get('status')} (generation {route.get('generation')}) "
                          f"on {route.get('engine')}{reason}")  # fmt: skip
        _step(f"4. run {PIPELINE}")
        started_at = time.time()
        run = client.pipelines.run(str(_repo_path(PIPELINE)), progress=True)
        state = run.state()
        if state["status"] != "succeeded":
            raise StepFailedError(f"run {run.id} {state['status']}: {state.get('error')}")
        for name, ref in state["outputs"].items():
            console.print(f"  {name}: {ref}")
        _step("5. one chat request through the gateway (openai client)")
        _chat(client)
        _step("6. usage: the pipeline's model steps and the chat, per principal and model")
        _usage(started_at)
        _step("7. semantic search over the indexed results")
        hits = _search(client)
        _step(f"8. lineage of run {run.id}")
        _lineage(client, run.id, hits[0]["lineage"])
    finally:
        _step("9. platform down")
        with quiet_ray():  # Ray narrates the actors it kills: "(raylet) … killed by `ray.kill`"
            stopped = down()
            ray.shutdown()
        for name in stopped:
            console.print(f"{name}: stopped")
        console.print("ray: stopped")
    console.print(Text("demo complete", style="bold green") + Text(f" in {time.monotonic() - started:.0f}s"))
