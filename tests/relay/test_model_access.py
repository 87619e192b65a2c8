"""A Policy's ``access`` rules: a model they name is served only to the principals and teams they
name, through the gateway (every OpenAI route, ``/v1/models``) and pipelines' model steps alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from metering_support import api_key, priced_model, unique
from relay_support import Relay, assert_openai_error

from mnemos.soul.limits import POLICY_MAX_AGE_S

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(scope="module")
def restricted(governed: Relay) -> Iterator[dict[str, Any]]:
    """A model open to team ``crimson-…`` and to the principal ``alice-…`` only; keys of each kind."""
    model, alice, policy, team = unique("restricted"), unique("alice"), unique("access"), unique("crimson")
    governed.apply(priced_model(model))
    governed.client.apply([{"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": policy},
                            "spec": {"access": [{"models": [model], "teams": [team], "principals": [alice]}]}}])
    keys = {"red": api_key(governed, unique("red"), team=team), "alice": api_key(governed, alice),
            "blue": api_key(governed, unique("blue"), team="blue"),
            "admin": api_key(governed, unique("admin"), "admin")}  # fmt: skip
    time.sleep(POLICY_MAX_AGE_S + 1.0)  # the bound within which every gateway replica holds a Policy change
    yield {"model": model, "keys": keys, "team": team}
    governed.client.delete("Policy", policy)


def _chat(gw: Relay, key: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "may I"}], **extra}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                      timeout=30)  # fmt: skip


def test_a_model_an_access_rule_names_is_served_only_to_whom_it_names(governed: Relay,
                                                                      restricted: dict[str, Any]) -> None:
    model, keys = restricted["model"], restricted["keys"]
    refused = _chat(governed, keys["blue"], model)
    assert_openai_error(refused, 403, code="model_not_allowed", param="model", type_="permission_error")
    assert "crimson" not in refused.text and "alice" not in refused.text  # who may call it is not told
    for who in ("red", "alice"):
        assert _chat(governed, keys[who], model).status_code == 200, who
    # Every route that calls the model, streamed or not; an admin is held by the rule too.
    assert _chat(governed, keys["blue"], model, stream=True).status_code == 403
    assert _chat(governed, keys["admin"], model).status_code == 403
    for path, body in (("/v1/completions", {"prompt": "may I"}), ("/v1/embeddings", {"input": "may I"})):
        answer = httpx.post(f"{governed.url}{path}", json={"model": model, **body}, timeout=30,
                            headers={"Authorization": f"Bearer {keys['blue']}"})  # fmt: skip
        assert_openai_error(answer, 403, code="model_not_allowed", param="model", type_="permission_error")
    assert _chat(governed, keys["blue"], "echo").status_code == 200  # a model no rule names stays open


def test_the_model_list_shows_each_caller_the_models_it_may_call(governed: Relay, restricted: dict[str, Any]) -> None:
    model, keys = restricted["model"], restricted["keys"]

    def listed(who: str) -> set[str]:
        answer = httpx.get(f"{governed.url}/v1/models", headers={"Authorization": f"Bearer {keys[who]}"}, timeout=30)
        return {card["id"] for card in answer.json()["data"]}

    assert model not in listed("blue")
    assert model in listed("red") and "echo" in listed("blue")
    one = httpx.get(f"{governed.url}/v1/models/{model}", headers={"Authorization": f"Bearer {keys['blue']}"})
    assert_openai_error(one, 403, code="model_not_allowed", param="model", type_="permission_error")  # as a chat
    assert httpx.get(f"{governed.url}/v1/models/{model}", headers={"Authorization": f"Bearer {keys['red']}"}).json()[
        "id"] == model  # fmt: skip


def test_a_pipelines_model_step_is_held_by_the_same_rule(governed: Relay, restricted: dict[str, Any]) -> None:
    """A pipeline's model steps are metered as the principal that started the run (``ModelMeter``):
    a key the rule does not name cannot reach the model by running a pipeline."""
    from mnemos.errors import ModelAccessError
    from mnemos.soul.limits import MeteredIdentity, ModelMeter

    model = restricted["model"]

    async def call(identity: MeteredIdentity) -> None:
        meter = ModelMeter(governed.client.engram, identity, model)
        try:
            async with meter.call(4, 2) as settle:
                settle(4, 2)
        finally:
            await meter.close()

    with pytest.raises(ModelAccessError, match="not open to this credential"):
        asyncio.run(call(MeteredIdentity(subject=unique("bob"), team="blue")))
    asyncio.run(call(MeteredIdentity(subject=unique("carol"), team=restricted["team"])))
    asyncio.run(call(MeteredIdentity(subject="local:someone")))  # the local admin, no credential: no rule holds


def test_an_access_rule_names_someone() -> None:
    from mnemos.errors import ValidationError
    from mnemos.genome import parse_resource

    doc = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": "nobody"},
           "spec": {"access": [{"models": ["m"]}]}}  # fmt: skip
    with pytest.raises(ValidationError, match="names principals or teams"):
        parse_resource(doc)


def test_a_credentials_model_list_is_all_it_may_call(governed: Relay, restricted: dict[str, Any]) -> None:
    """A key minted with ``models`` calls only those (a team the Policy opens the model to included),
    sees only those in ``/v1/models``, and mints nothing wider: an attacker with a listed admin key
    cannot get an unlisted credential, by leaving the list out, emptying it or naming more."""
    model, team = restricted["model"], restricted["team"]

    def mint(key: str, **body: Any) -> httpx.Response:
        body = {"name": unique("listed"), "role": "developer", "apiKey": True, **body}
        return httpx.post(f"{governed.url}/v1/tokens", json=body, headers={"Authorization": f"Bearer {key}"},
                          timeout=30)  # fmt: skip

    made = mint(restricted["keys"]["admin"], role="admin", team=team, models=["echo"])
    assert made.status_code == 201, made.text
    assert made.json()["models"] == ["echo"]
    boxed = made.json()["apiKey"]
    assert _chat(governed, boxed, "echo").status_code == 200
    refused = _chat(governed, boxed, model)  # the Policy opens it to the team; the key's list does not
    assert_openai_error(refused, 403, code="model_not_allowed", param="model", type_="permission_error")
    assert "model list" in refused.json()["error"]["message"]
    assert _chat(governed, boxed, model, stream=True).status_code == 403
    embedded = httpx.post(f"{governed.url}/v1/embeddings", json={"model": model, "input": "x"}, timeout=30,
                          headers={"Authorization": f"Bearer {boxed}"})  # fmt: skip
    assert embedded.status_code == 403
    listed = httpx.get(f"{governed.url}/v1/models", headers={"Authorization": f"Bearer {boxed}"}, timeout=30)
    assert [card["id"] for card in listed.json()["data"]] == ["echo"]

    for body in ({"models": [model]}, {"models": ["echo", model]}, {"models": []}):
        wider = mint(boxed, **body)
        assert_openai_error(wider, 403, param="models", type_="permission_error")
    inherited = mint(boxed)  # left out: the caller's own list
    assert inherited.status_code == 201 and inherited.json()["models"] == ["echo"]
    jwt = mint(boxed, apiKey=False, ttl="10m")  # a JWT carries it as a claim
    assert jwt.status_code == 201 and jwt.json()["models"] == ["echo"]
    assert _chat(governed, jwt.json()["token"], model).status_code == 403
    assert _chat(governed, jwt.json()["token"], "echo").status_code == 200
    bad = mint(restricted["keys"]["admin"], models=["two words"])
    assert_openai_error(bad, 422, param="models[0]")


def test_the_public_readiness_route_names_no_model(governed: Relay, restricted: dict[str, Any]) -> None:
    """``/readyz`` answers anyone (probes carry no key): with auth on it counts models per state and
    names none, a restricted one included; an authenticated caller lists what it may call."""
    ready = httpx.get(f"{governed.url}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["modelStates"].get("ready", 0) >= 2, ready.text
    assert restricted["model"] not in ready.text and "echo" not in ready.text and "models" not in ready.json()
