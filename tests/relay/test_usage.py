"""Spend and usage per key, team and model: ``GET /v1/usage``, ``mnemos usage``, the response cache."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from metering_support import api_key, priced_model, spend, unique, usage
from relay_support import Relay, assert_openai_error, wait_until

from mnemos.trace.lineage import events as lineage_events

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(scope="module")
def traffic(governed: Relay) -> dict[str, str]:
    """Two keys in two teams calling a priced model (one of them streaming); an admin and a viewer."""
    import httpx

    model = unique("usage")
    governed.apply(priced_model(model))
    names = {"alice": unique("alice"), "bob": unique("bob"), "viewer": unique("viewer")}
    keys = {"alice": api_key(governed, names["alice"], team="red"), "bob": api_key(governed, names["bob"], team="blue"),
            "admin": api_key(governed, unique("admin"), "admin"),
            "viewer": api_key(governed, names["viewer"], "viewer")}  # fmt: skip
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "w1 w2 w3"}]}
    for who, count in (("alice", 3), ("bob", 2)):
        for i in range(count):
            response = httpx.post(f"{governed.url}/v1/chat/completions", timeout=30,
                                  json={**body, "stream": who == "bob" and i == 0},
                                  headers={"Authorization": f"Bearer {keys[who]}"})  # fmt: skip
            assert response.status_code == 200, response.text
    wait_until(lambda: usage(governed, keys["admin"], model=model)["total"]["requests"] == 5, timeout=30)
    return {"model": model, **{f"{k}_key": v for k, v in keys.items()}, **names}


def test_usage_per_key_team_and_model(governed: Relay, traffic: dict[str, str]) -> None:
    body = usage(governed, traffic["admin_key"], model=traffic["model"])
    rows = {row["principal"]: row for row in body["data"]}
    assert set(rows) == {traffic["alice"], traffic["bob"]}
    alice, bob = rows[traffic["alice"]], rows[traffic["bob"]]
    assert (alice["team"], alice["model"], alice["requests"]) == ("red", traffic["model"], 3)
    assert (bob["team"], bob["requests"]) == ("blue", 2)
    assert alice["prompt_tokens"] == 9 and alice["completion_tokens"] == 9  # echo: 3 words in, 3 out
    assert alice["spend"] == pytest.approx(spend(9, 9))
    assert bob["completion_tokens"] == 6  # the streamed answer's usage counts too
    by_team = usage(governed, traffic["admin_key"], model=traffic["model"], group_by="team")
    assert {row["team"]: row["requests"] for row in by_team["data"]} == {"red": 3, "blue": 2}
    assert usage(governed, traffic["admin_key"], team="blue", model=traffic["model"])["total"]["requests"] == 2


def test_viewer_reads_only_its_own_usage(governed: Relay, traffic: dict[str, str]) -> None:
    import httpx

    own = usage(governed, traffic["viewer_key"])
    assert own["data"] == [] and own["total"]["requests"] == 0  # alice's and bob's rows are not shown
    response = httpx.get(f"{governed.url}/v1/usage", params={"principal": traffic["alice"]}, timeout=30,
                         headers={"Authorization": f"Bearer {traffic['viewer_key']}"})  # fmt: skip
    error = assert_openai_error(response, 403, param="principal", type_="permission_error")
    assert "own usage" in error["message"]
    for window in ("soon", "9" * 400 + "s"):  # the second is a float too large: inf (its answer said -Infinity)
        bad = httpx.get(f"{governed.url}/v1/usage", params={"window": window}, timeout=30,
                        headers={"Authorization": f"Bearer {traffic['admin_key']}"})  # fmt: skip
        said = assert_openai_error(bad, 422, param="window")["message"]
        assert "24h" in said and "30d" in said and "\\d" not in said, said  # the form, not a regex
    grouped = httpx.get(f"{governed.url}/v1/usage", params={"group_by": "team,colour"}, timeout=30,
                        headers={"Authorization": f"Bearer {traffic['admin_key']}"})  # fmt: skip
    assert "principal, team and model" in assert_openai_error(grouped, 422, param="group_by")["message"]
    assert httpx.get(f"{governed.url}/v1/usage", timeout=30).status_code == 401


def _cli(args: list[str], env: dict[str, str], capsys: Any, monkeypatch: Any) -> tuple[int, str, str]:
    """Run ``mnemos …`` as the console script does: ``(exit code, stdout, stderr)``."""
    from mnemos.cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(args)
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out, out.err


def test_usage_cli(governed: Relay, traffic: dict[str, str], capsys: Any, monkeypatch: Any) -> None:
    args = ["usage", "--url", governed.url, "--model", traffic["model"]]
    admin = {"MNEMOS_API_KEY": traffic["admin_key"]}
    code, out, err = _cli([*args, "-o", "json"], admin, capsys, monkeypatch)
    assert code == 0, err
    body = json.loads(out)
    assert {(r["principal"], r["team"], r["requests"]) for r in body["data"]} == {
        (traffic["alice"], "red", 3), (traffic["bob"], "blue", 2)}  # fmt: skip
    code, out, err = _cli([*args, "--by", "team"], admin, capsys, monkeypatch)
    assert code == 0 and "red" in out and "TOTAL" in out, (out, err)
    code, out, err = _cli([*args, "--principal", traffic["alice"]], {"MNEMOS_API_KEY": traffic["viewer_key"]},
                          capsys, monkeypatch)  # fmt: skip
    assert code == 7 and "own usage" in err and "Traceback" not in err
    code, out, err = _cli(["usage", "--url", "http://127.0.0.1:9", "--window", "abc"], {}, capsys, monkeypatch)
    assert code == 2 and "--window 'abc' is not a duration" in err, err  # named before asking anyone


def test_token_create_sets_limits_and_team(governed: Relay, capsys: Any, monkeypatch: Any) -> None:
    from mnemos.soul.store import IdentityStore

    env = {"MNEMOS_ENGRAM__URI": governed.settings.engram.uri}
    name = unique("cli")
    create = ["token", "create", "--name", name, "--role", "developer"]
    code, out, err = _cli([*create, "--api-key", "--team", "red", "--rpm", "60", "--tpm", "1000", "--budget", "5",
                           "--budget-window", "1d", "-o", "json"], env, capsys, monkeypatch)  # fmt: skip
    assert code == 0, err
    key_id = json.loads(out)["id"]
    record = IdentityStore.from_settings(governed.settings, governed.client.engram).api_key(key_id)
    assert record is not None and record.team == "red"
    assert record.limits == {"rpm": 60, "tpm": 1000, "budget": {"amount": 5.0, "window": "1d"}}
    code, out, err = _cli([*create, "--api-key", "--rpm", "0"], env, capsys, monkeypatch)
    assert code == 2 and "--rpm" in err and "limits.rpm" not in err and "Traceback" not in err
    code, out, err = _cli([*create, "--team", "red", "--rpm", "5"], env, capsys, monkeypatch)  # a JWT: in its claims
    assert code == 0, err
    payload = out.strip().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["team"] == "red" and claims["lim"] == {"rpm": 5}, claims


def test_embeddings_are_metered_and_held_to_budgets(governed: Relay) -> None:
    """``/v1/embeddings`` reserves, settles and records spend like completions: a key whose budget
    is spent cannot go on embedding."""
    import httpx

    model = unique("embed")
    governed.apply(priced_model(model))
    key = api_key(governed, unique("embedder"), team="green", budget={"tokens": 40, "window": "1d"})
    admin = api_key(governed, unique("admin"), "admin")
    body = {"model": model, "input": ["w1 w2 w3"], "encoding_format": "float"}  # echo: 3 tokens, reserves 8
    with httpx.Client(base_url=governed.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        answers = [http.post("/v1/embeddings", json=body) for _ in range(12)]
    served = [a for a in answers if a.status_code == 200]
    assert answers[0].status_code == 200 and served[0].json()["usage"]["prompt_tokens"] == 3, answers[0].text
    refused = [a for a in answers if a.status_code != 200]
    assert refused, "a spent token budget must refuse embeddings too"
    for answer in refused:
        error = assert_openai_error(answer, 429, code="insufficient_quota", type_="insufficient_quota")
        assert error["param"] == "key.budget", error
    rows = wait_until(lambda: (u := usage(governed, admin, model=model))["total"]["requests"] == len(served)
                      and u, timeout=30)  # fmt: skip
    assert rows["total"]["prompt_tokens"] == 3 * len(served) <= 40
    assert rows["total"]["spend"] == pytest.approx(spend(3 * len(served), 0))
    assert {row["team"] for row in rows["data"]} == {"green"}
    # A text without spaces is not one token: NEURON counts a token per 4 bytes where that is more.
    unspaced = httpx.post(f"{governed.url}/v1/embeddings", json={**body, "input": ["x" * 400]}, timeout=30,
                          headers={"Authorization": f"Bearer {api_key(governed, unique('unspaced'))}"})  # fmt: skip
    assert unspaced.status_code == 200 and unspaced.json()["usage"]["prompt_tokens"] == 100, unspaced.text


def test_exact_match_cache_opt_in(governed: Relay) -> None:
    import httpx

    model = unique("cached")
    governed.apply(priced_model(model, cache={"ttl": "10m"}))
    key = api_key(governed, unique("cache"))
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "same question"}],
            "temperature": 0}
    with httpx.Client(base_url=governed.url, headers=headers, timeout=30) as http:
        answers = [http.post("/v1/chat/completions", json=body) for _ in range(6)]  # both replicas fill, then hit
        hits = [a for a in answers if a.headers.get("x-mnemos-cache") == "hit"]
        assert hits and all(a.json()["choices"] == answers[0].json()["choices"] for a in hits)
        # A hit is a request of its own: its id in the header, its lineage noting the cache.
        rid = hits[0].headers["x-mnemos-request-id"]
        assert rid != hits[0].json()["id"] and len({h.headers["x-mnemos-request-id"] for h in hits}) == len(hits)
        node = wait_until(lambda: [e for e in lineage_events(governed.client.engram) if e["id"] == f"request:{rid}"],
                          timeout=30)  # fmt: skip
        assert node[0]["attrs"]["cached"] is True and node[0]["attrs"]["model"] == model, node
        counted = answers[0].json()["usage"]
        assert node[0]["attrs"]["usage"] == {"prompt": counted["prompt_tokens"],
                                             "completion": counted["completion_tokens"]}
        unset = {k: v for k, v in body.items() if k != "temperature"}  # samples at the model's default
        for sampling in ({**body, "temperature": 0.7}, unset, unset, unset):  # never cached
            assert http.post("/v1/chat/completions", json=sampling).headers.get("x-mnemos-cache") is None
    # Each replica counts its own hits: scrape until the one that served a hit answers /metrics.
    hit = f'model="{model}",result="hit"'
    metrics = wait_until(lambda: hit in (t := httpx.get(f"{governed.url}/metrics", headers=headers,
                                                        timeout=30).text) and t, timeout=30)  # fmt: skip
    assert "mnemos_relay_cache_total" in metrics and hit in metrics


def test_embeddings_are_cached_too(governed: Relay) -> None:
    """Embeddings never sample: with ``cache`` every repeat of a request is a hit (after each replica
    holds it), under the same encoding; another encoding is another answer."""
    import httpx

    model = unique("cached-embed")
    governed.apply(priced_model(model, cache={"ttl": "10m"}))
    headers = {"Authorization": f"Bearer {api_key(governed, unique('embed-cache'))}"}
    body = {"model": model, "input": ["one text", "another"]}
    with httpx.Client(base_url=governed.url, headers=headers, timeout=30) as http:
        answers = [http.post("/v1/embeddings", json=body) for _ in range(6)]
        hits = [a for a in answers if a.headers.get("x-mnemos-cache") == "hit"]
        assert hits and all(a.json() == answers[0].json() for a in hits), [a.status_code for a in answers]
        floats = http.post("/v1/embeddings", json={**body, "encoding_format": "float"})
        assert isinstance(floats.json()["data"][0]["embedding"], list)


def test_a_new_price_limit_or_cache_is_served_without_reloading_the_model(governed: Relay) -> None:
    """A generation that changes only what the gateway reads (pricing, limits, cache) is Ready at
    once on the replicas already running; one that changes how the model is served rolls them."""
    import httpx
    import ray
    from ray import serve

    from mnemos.relay.controller import app_name

    model = unique("repriced")
    first = governed.apply(priced_model(model))["models"][model]

    def replicas() -> list[str]:
        return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                      if a["name"].startswith(f"SERVE_REPLICA::{app_name(model)}#"))  # fmt: skip

    running = replicas()
    headers = {"Authorization": f"Bearer {api_key(governed, unique('repriced'))}"}
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "again"}], "temperature": 0}
    with httpx.Client(base_url=governed.url, headers=headers, timeout=30) as http:
        assert not any(http.post("/v1/chat/completions", json=body).headers.get("x-mnemos-cache") for _ in range(4))
        cached = governed.apply(priced_model(model, cache={"ttl": "10m"}))["models"][model]
        assert (cached["generation"], cached["status"]) == (first["generation"] + 1, "ready"), cached
        assert replicas() == running  # not reloaded: the replica built from the first generation serves
        info = serve.get_app_handle(app_name(model)).info.remote().result(timeout_s=30)
        assert info["generation"] == first["generation"], info
        answers = [http.post("/v1/chat/completions", json=body) for _ in range(6)]
        assert any(a.headers.get("x-mnemos-cache") == "hit" for a in answers)  # the new generation's cache
        served = governed.apply(priced_model(model, cache={"ttl": "10m"}, resources={"cpus": 0.2}))["models"][model]
        assert served["status"] == "ready" and replicas() != running  # a serving change: new replicas
        info = serve.get_app_handle(app_name(model)).info.remote().result(timeout_s=30)
        assert info["generation"] == served["generation"] == first["generation"] + 2, info
