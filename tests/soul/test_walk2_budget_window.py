"""A budget window under 1 s (``1ms``: the budget resets a thousand times a second, so it limits
nothing) is refused where a budget is set: ``POST /v1/tokens``, ``mnemos token create
--budget-window``, a Policy's, Model's or Adapter's ``spec.limits``. What was stored before that
still loads, and is enforced as a 1 s window."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from mnemos.engram import Engram
from mnemos.errors import ValidationError
from mnemos.genome import Registry, parse_resource
from mnemos.soul.apikeys import APIKEYS_PREFIX, ApiKeyRecord, hash_secret, verify_api_key

POLICY = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": "budgets"},
          "spec": {"limits": [{"teams": ["red"], "rpm": 60},
                              {"teams": ["blue"], "budget": {"tokens": 1000, "window": "1ms"}}]}}  # fmt: skip
MODEL = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": "tiny"},
         "spec": {"family": "llama", "version": "tiny", "artifact": {"uri": "engram://models/tiny"},
                  "runtime": {"engine": "transformers"},
                  "limits": {"budget": {"amount": 5, "window": 0.5}}}}  # fmt: skip


@pytest.mark.parametrize("window", [0.001, "1ms", "500ms", 0.999])
def test_minting_a_budget_window_under_a_second_is_a_422_naming_it(token_gateway: Any, window: Any) -> None:
    client, headers, store = token_gateway
    body = {"name": "fast", "role": "developer", "apiKey": True, "limits": {"budget": {"tokens": 10, "window": window}}}
    resp = client.post("/v1/tokens", json=body, headers=headers)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["param"] == "limits.budget.window", error  # as the 403 of a window beyond the caller's
    assert "shorter than the shortest budget window (1 s" in error["message"] and "1s or more" in error["message"]
    assert [d["name"] for d in store.list()] == [next(d["name"] for d in store.list())]  # only the admin key

    body["limits"]["budget"]["window"] = "1s"
    assert client.post("/v1/tokens", json=body, headers=headers).status_code == 201


def test_token_create_refuses_a_budget_window_under_a_second(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mnemos.cli import token as token_cli
    from mnemos.soul import IdentityStore

    store = IdentityStore.from_settings(settings, Engram.from_settings(settings))
    monkeypatch.setattr(token_cli, "_store", lambda: store)
    made = CliRunner().invoke(token_cli.app, ["create", "--name", "x", "--role", "developer", "--api-key",
                                              "--budget", "5", "--budget-window", "1ms"])  # fmt: skip
    assert isinstance(made.exception, ValidationError), made.output
    assert made.exception.param == "budget-window" and "--budget-window" in made.exception.message
    assert store.list() == []  # nothing was made


def test_a_key_stored_with_a_millisecond_window_loads_and_is_enforced_per_second(settings: Any) -> None:
    limits = {"rpm": 5, "budget": {"tokens": 10, "window": 0.001}}  # as stored before it was refused
    record = ApiKeyRecord(id="k1", name="old", role="developer", hash=hash_secret("k1", "s3cret"),
                          created_at=time.time(), limits=limits)  # fmt: skip
    from mnemos.soul.limits import budget_window  # (the window a budget is enforced over)

    principal = verify_api_key(record, "k1", "s3cret")
    assert principal.limits.rpm == 5 and principal.limits.budget.window == 1.0
    assert budget_window(principal.limits.budget) == 1.0

    from mnemos.soul import IdentityStore

    # A key stored so mints within its limits (its own window read as 1 s, not refused as under 1 s).
    store = IdentityStore.from_settings(settings, Engram.from_settings(settings))
    made = store.create_api_key("holder", "developer", limits={"budget": {"tokens": 10, "window": 60}})
    doc = store.engram.read_json(f"{APIKEYS_PREFIX}/{made.id}.json")
    store.engram.write_json(f"{APIKEYS_PREFIX}/{made.id}.json",
                            {**doc, "limits": {"budget": {"tokens": 10, "window": 0.001}}})  # fmt: skip
    key_id, secret = made.secret[len("mk_") :].split("_", 1)
    assert verify_api_key(store.api_key(key_id), key_id, secret).limits.budget.window == 1.0


def test_admission_refuses_budget_windows_under_a_second(tmp_path: Path) -> None:
    registry = Registry(Engram(str(tmp_path / "engram")))
    with pytest.raises(ValidationError) as refused:
        registry.apply(parse_resource(copy.deepcopy(POLICY)))
    assert refused.value.param == "spec.limits[1].budget.window", refused.value
    assert "0.001 s is shorter than the shortest budget window" in refused.value.message
    with pytest.raises(ValidationError) as refused:
        registry.apply(parse_resource(copy.deepcopy(MODEL)))
    assert refused.value.param == "spec.limits.budget.window", refused.value
    assert registry.list() == []

    fixed = copy.deepcopy(POLICY)
    fixed["spec"]["limits"][1]["budget"]["window"] = "1s"
    assert registry.apply(parse_resource(fixed)).action == "created"


def test_a_policy_stored_with_a_millisecond_window_loads_and_is_enforced_per_second(tmp_path: Path) -> None:
    from mnemos.soul.limits import budget_window

    engram = Engram(str(tmp_path / "engram"))
    engram.write_json("registry/Policy/budgets/00000001.json", {**copy.deepcopy(POLICY),
                      "metadata": {"name": "budgets", "generation": 1}})  # fmt: skip
    policy = Registry(engram).get("Policy", "budgets")  # stored before the refusal: still read
    rule = policy.spec.limits[1]
    assert rule.budget.window == 0.001 and budget_window(rule.budget) == 1.0


def test_a_jwt_minted_with_a_millisecond_window_is_enforced_per_second(tmp_path: Path) -> None:
    """A JWT's ``lim`` claim minted before windows under 1 s were refused: read as 1 s (as a stored
    key's), so that a credential it mints without a budget of its own inherits a window it may mint."""
    from mnemos.soul.keys import KeyRing
    from mnemos.soul.tokens import issue_token, verify_token

    ring = KeyRing(Engram(str(tmp_path / "engram")), rotate_hours=24, token_ttl=3600)
    minted = {"budget": {"tokens": 10, "window": 0.001}}
    old = issue_token(ring, subject="old", role="developer", issuer="walk2", limits=minted)
    principal = verify_token(old.token, ring.public_keys(), issuer="walk2")
    assert principal.limits.budget.window == 1.0 and principal.limits.budget.tokens == 10


@pytest.mark.parametrize("window", ["99999999999999d", 1e300, "36501d"])
def test_a_budget_window_past_a_hundred_years_is_refused_where_it_is_set(
    token_gateway: Any, tmp_path: Path, window: Any
) -> None:
    """``99999999999999d`` was accepted, and its 429 read "per 8639999999999913984s"."""
    client, headers, _store = token_gateway
    body = {"name": "slow", "role": "developer", "apiKey": True, "limits": {"budget": {"tokens": 10, "window": window}}}
    resp = client.post("/v1/tokens", json=body, headers=headers)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["param"] == "limits.budget.window" and "longer than the longest budget window" in error["message"]
    schema = client.get("/openapi.json").json()["paths"]["/v1/tokens"]["post"]["requestBody"]["content"]
    window_schema = schema["application/json"]["schema"]["$defs"]["Budget"]["properties"]["window"]
    assert window_schema["maximum"] == 100 * 365 * 86400

    registry = Registry(Engram(str(tmp_path / "engram")))
    policy = copy.deepcopy(POLICY)
    policy["spec"]["limits"][1]["budget"]["window"] = window
    with pytest.raises(ValidationError) as refused:
        registry.apply(parse_resource(policy))
    assert refused.value.param == "spec.limits[1].budget.window", refused.value
    policy["spec"]["limits"][1]["budget"]["window"] = "36500d"
    assert registry.apply(parse_resource(policy)).action == "created"
