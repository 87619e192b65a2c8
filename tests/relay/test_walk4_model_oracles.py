"""A caller's access to a model is decided before the model's state: a model it may not call is
refused alike (403 ``model_not_allowed``) whether it is ready, failed or not served at all, on every
OpenAI route and on ``GET /v1/models/{id}``; the refusal is counted as the edge's are. A 503 for a
Model not ready is for those who may call it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from metering_support import api_key, unique
from relay_support import Relay, assert_openai_error, wait_until
from tests_support import model_doc

from mnemos.soul.limits import POLICY_MAX_AGE_S

pytestmark = pytest.mark.usefixtures("ray_cluster")

ASK = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
CALLS = (("/v1/chat/completions", ASK), ("/v1/chat/completions", {**ASK, "stream": True}),
         ("/v1/completions", {"prompt": "hi", "max_tokens": 2}), ("/v1/embeddings", {"input": "hi"}))  # fmt: skip


@pytest.fixture(scope="module")
def world(governed: Relay) -> Iterator[dict[str, Any]]:
    """A ready and a failed Model that a Policy opens to one team only, a failed Model open to all,
    a key with a model list (``echo``), a key outside the team and one inside."""
    from mnemos.soul.store import IdentityStore

    secret, broken, open_broken = unique("secret"), unique("broken"), unique("open-broken")
    policy, team = unique("walk4"), unique("teal")
    failing = {"runtime": {"engine": "transformers"}, "artifact": {"uri": "engram://models/never-stored"}}
    governed.apply(model_doc(secret), model_doc(broken, **failing), model_doc(open_broken, **failing))
    governed.client.apply([{"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": policy},
                            "spec": {"access": [{"models": [secret, broken], "teams": [team]}]}}])  # fmt: skip
    store = IdentityStore.from_settings(governed.settings, governed.client.engram)
    keys = {"boxed": store.create_api_key(unique("boxed"), "developer", models=["echo"]).secret,
            "outsider": api_key(governed, unique("outsider")), "member": api_key(governed, unique("member"), team=team)}
    time.sleep(POLICY_MAX_AGE_S + 1.0)  # the bound within which every gateway replica holds a Policy change
    yield {"secret": secret, "broken": broken, "open_broken": open_broken, "keys": keys}
    governed.client.delete("Policy", policy)
    for name in (secret, broken, open_broken):
        governed.client.delete("Model", name)


def _post(gw: Relay, key: str, path: str, model: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gw.url}{path}", json={"model": model, **body}, headers={"Authorization": f"Bearer {key}"},
                      timeout=30)  # fmt: skip


def _get(gw: Relay, key: str, model: str) -> httpx.Response:
    return httpx.get(f"{gw.url}/v1/models/{model}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _refusals(gw: Relay, key: str, names: list[str]) -> list[dict[str, Any]]:
    """The 403 of every route for each of ``names``, with the name taken out of its message."""
    seen = []
    for name in names:
        for path, body in CALLS:
            error = assert_openai_error(_post(gw, key, path, name, body), 403, code="model_not_allowed",
                                        param="model", type_="permission_error")  # fmt: skip
            seen.append({**error, "message": error["message"].replace(name, "<model>")})
        error = assert_openai_error(_get(gw, key, name), 403, code="model_not_allowed", param="model",
                                    type_="permission_error")  # fmt: skip
        seen.append({**error, "message": error["message"].replace(name, "<model>")})
    return seen


def test_a_model_the_key_does_not_list_is_refused_alike_whatever_its_state(governed: Relay,
                                                                          world: dict[str, Any]) -> None:  # fmt: skip
    """A key limited to ``echo`` learned which names were served (403 against 404) and which were
    not ready (503 "model 'x' is failed (ArtifactMissing)")."""
    names = [world["secret"], world["broken"], world["open_broken"], unique("never-served")]
    wait_until(lambda: _get(governed, world["keys"]["member"], world["open_broken"]).status_code == 503)
    refusals = _refusals(governed, world["keys"]["boxed"], names)
    assert all(r == refusals[0] for r in refusals), refusals
    assert "model list" in refusals[0]["message"]
    assert _post(governed, world["keys"]["boxed"], "/v1/chat/completions", "echo", ASK).status_code == 200


def test_a_model_a_policy_keeps_from_the_caller_is_refused_alike_whatever_its_state(
    governed: Relay, world: dict[str, Any]
) -> None:
    """Outside the Policy's team: the failed model answered 503 with its phase and reason, the
    ready one 403 (and ``GET /v1/models/{id}`` 404 for both)."""
    refusals = _refusals(governed, world["keys"]["outsider"], [world["secret"], world["broken"]])
    assert all(r == refusals[0] for r in refusals), refusals
    # Whom the rule opens it to gets the truth: served, or not ready (and why).
    member = world["keys"]["member"]
    assert _post(governed, member, "/v1/chat/completions", world["secret"], ASK).status_code == 200
    assert _get(governed, member, world["secret"]).json()["id"] == world["secret"]
    failed = _post(governed, member, "/v1/chat/completions", world["broken"], ASK)
    assert_openai_error(failed, 503, code="unavailable", type_="server_error")


def test_get_model_says_what_is_true_and_echoes_a_name_cut(governed: Relay, world: dict[str, Any]) -> None:
    """``GET /v1/models/{id}`` said "does not exist" for a Model that exists but failed, and echoed a
    3,000-character id whole (a chat cuts it at 120)."""
    key = world["keys"]["outsider"]
    failed = wait_until(lambda: (r := _get(governed, key, world["open_broken"])).status_code == 503 and r)
    error = assert_openai_error(failed, 503, code="unavailable", param="model", type_="server_error")
    assert "failed" in error["message"] and "does not exist" not in error["message"]
    long = "m" * 3000
    for who, status in (("outsider", 404), ("boxed", 403)):
        for answer in (_get(governed, world["keys"][who], long),
                       _post(governed, world["keys"][who], "/v1/chat/completions", long, ASK)):  # fmt: skip
            assert answer.status_code == status, answer.text
            assert len(answer.text) < 400 and "m" * 121 not in answer.text, answer.text[:200]


def _forbidden(gw: Relay) -> float:
    text = httpx.get(f"{gw.url}/metrics", timeout=30).text
    found = re.search(r'^mnemos_relay_auth_failures_total\{reason="forbidden"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_model_access_refusal_is_counted_as_forbidden(governed: Relay, world: dict[str, Any]) -> None:
    """`mnemos_relay_auth_failures_total{reason="forbidden"}` counted the edge's 403s only: a key
    hammering models it may not call showed nothing there."""
    before = _forbidden(governed)
    for _ in range(3):
        refused = _post(governed, world["keys"]["outsider"], "/v1/chat/completions", world["secret"], ASK)
        assert refused.status_code == 403
    wait_until(lambda: _forbidden(governed) >= before + 3, timeout=30)


def test_lineage_names_its_path_part_one_way(relay: Relay) -> None:
    """``/v1/lineage/{node_id}`` named it ``node_id`` in its 422 and ``id`` in its 404."""
    too_long = httpx.get(f"{relay.url}/v1/lineage/{'r' * 513}", timeout=30)
    assert_openai_error(too_long, 422, param="node_id")
    unknown = httpx.get(f"{relay.url}/v1/lineage/run:{unique('nothing')}", timeout=30)
    assert_openai_error(unknown, 404, param="node_id")
