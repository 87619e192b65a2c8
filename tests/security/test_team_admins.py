"""A team's admin manages its team's credentials only, as the probe met it: an admin API key scoped to
``manage-identities`` and ``read-lineage`` of team ``research`` listed every team's credentials and
revoked a full admin's key and another team's operator (``DELETE /v1/tokens/{id}`` → 200)."""

from __future__ import annotations

import uuid

from security_support import Gateway


def _key(gateway: Gateway, role: str, **kw: object) -> object:
    return gateway.store.create_api_key(f"probe-{role}-{uuid.uuid4().hex[:6]}", role, **kw)


def test_a_team_bound_admin_lists_and_revokes_only_its_teams_credentials(gateway: Gateway) -> None:
    team = f"research{uuid.uuid4().hex[:6]}"
    admin = _key(gateway, "admin", scopes=["manage-identities", "read-lineage"], team=team)
    full = _key(gateway, "admin")  # no team, every verb
    ops = _key(gateway, "operator", team="ops")
    reader = _key(gateway, "developer", scopes=["read-lineage"], team=team)  # at or below the admin
    developer = _key(gateway, "developer", team=team)  # holds infer, submit …, which the admin lacks
    root = _key(gateway, "admin", team=team)  # of the team, but above the scoped admin

    listed = gateway.call("GET", "/v1/tokens", admin.secret, params={"all": "true"})
    assert listed.status_code == 200, listed.text
    seen = {d["id"] for d in listed.json()["data"]}
    assert {admin.id, reader.id, developer.id, root.id} <= seen
    assert not seen & {full.id, ops.id}
    assert {d["team"] for d in listed.json()["data"]} == {team}

    # another team's credential, or a teamless one: 404, the answer for an id nobody has
    missing = gateway.call("DELETE", "/v1/tokens/0123456789abcdef", admin.secret)
    assert missing.status_code == 404, missing.text
    for other in (full, ops):
        refused = gateway.call("DELETE", f"/v1/tokens/{other.id}", admin.secret)
        assert refused.status_code == 404, refused.text
        error, expected = refused.json()["error"], missing.json()["error"]
        assert error == {**expected, "message": expected["message"].replace("0123456789abcdef", other.id)}
        assert gateway.call("GET", "/v1/whoami", other.secret).status_code == 200  # still valid
    # one of its team that holds more than it does: 403, as minting it would be
    for above in (root, developer):
        refused = gateway.call("DELETE", f"/v1/tokens/{above.id}", admin.secret)
        assert refused.status_code == 403 and refused.json()["error"]["param"] == "id", refused.text
    assert gateway.call("DELETE", f"/v1/tokens/{reader.id}", admin.secret).status_code == 200

    # a caller without a team (an unscoped admin) still manages every team's credentials
    everyone = {d["id"] for d in gateway.call("GET", "/v1/tokens", "admin", params={"all": "true"}).json()["data"]}
    assert {full.id, ops.id, root.id} <= everyone
    assert gateway.call("DELETE", f"/v1/tokens/{ops.id}", "admin").status_code == 200
    # and a team's admin may revoke itself
    assert gateway.call("DELETE", f"/v1/tokens/{admin.id}", admin.secret).status_code == 200


def test_a_name_is_one_principal_a_team_admin_cannot_mint_anothers(gateway: Gateway) -> None:
    """The probe: a team's identity admin minted a viewer named like another team's developer, and
    read that developer's job results, run params and lineage as the owner, and spent its rate limit."""
    team, other = f"research{uuid.uuid4().hex[:6]}", f"vision{uuid.uuid4().hex[:6]}"
    admin = _key(gateway, "admin", scopes=["manage-identities", "read-artifacts", "read-lineage"], team=team)
    victim = f"dev-{uuid.uuid4().hex[:6]}"
    gateway.store.create_api_key(victim, "developer", team=other)

    def mint(who: str, name: str, **body: object) -> object:
        return gateway.call("POST", "/v1/tokens", who, json={"name": name, "role": "viewer", "apiKey": True,
                                                            "scopes": ["read-artifacts"], **body})  # fmt: skip

    taken = mint(admin.secret, victim)
    assert taken.status_code == 409 and taken.json()["error"]["param"] == "name", taken.text
    assert other not in taken.text and "outside your team" in taken.text  # which team holds it: not said
    teamless = _key(gateway, "admin")  # a full admin's name: becoming it is refused too
    assert mint(admin.secret, teamless.name).status_code == 409  # type: ignore[attr-defined]
    for name in ("anonymous", "local:root"):  # callers without a credential
        refused = mint(admin.secret, name)
        assert refused.status_code == 422 and refused.json()["error"]["param"] == "name", refused.text
    for name in (f"apikey:{victim}", f"Token:{victim}", "anonymous:x"):  # how audit records name holders
        refused = mint(admin.secret, name)  # (alice read the audit of one named apikey:alice as hers)
        assert refused.status_code == 422 and "audit records" in refused.json()["error"]["message"], refused.text
    # an admin without a team is told which team holds it; the same name in its own team is fine
    told = mint("admin", victim, team=team)
    assert told.status_code == 409 and f"of team {other!r}" in told.json()["error"]["message"], told.text
    assert mint("admin", victim, team=other).status_code == 201
    fresh = f"new-{uuid.uuid4().hex[:6]}"
    assert mint(admin.secret, fresh).status_code == 201  # a new name is its team's from now on
    assert mint("admin", fresh, team=other).status_code == 409


def test_data_is_read_by_owners_and_by_credentials_that_hold_execute(gateway: Gateway) -> None:
    """The probe: the team's identity admin (role admin, scopes without execute) and a read-only
    operator key read every team's job results, logs and run params, and the whole audit page."""
    sent = gateway.call("POST", "/v1/jobs", "developer-b", json={"function": "adder", "kwargs": {"a": 2, "b": 3}})
    assert sent.status_code == 200, sent.text
    job_id = sent.json()["id"]
    assert gateway.call("GET", f"/v1/jobs/{job_id}", "operator", params={"wait": 60}).json()["status"] == "succeeded"
    narrow = {
        "team admin": _key(gateway, "admin", scopes=["manage-identities", "read-artifacts", "read-lineage"],
                           team="research"),  # fmt: skip
        "read-only operator": _key(gateway, "operator", scopes=["read-artifacts", "read-lineage"]),
    }
    for who, key in narrow.items():
        view = gateway.call("GET", f"/v1/jobs/{job_id}", key.secret).json()  # type: ignore[attr-defined]
        assert "result" not in view or "value" not in (view["result"] or {}), (who, view)
        assert "result.value" in view.get("withheld", []), (who, view)
        logs = gateway.call("GET", f"/v1/jobs/{job_id}/logs", key.secret)  # type: ignore[attr-defined]
        assert logs.status_code == 403 and logs.json()["error"]["param"] == "scopes", (who, logs.text)
    full = gateway.call("GET", f"/v1/jobs/{job_id}", "operator").json()  # an operator keeps execute: reads it
    assert full["result"]["value"] == 5 and not full.get("withheld"), full
    assert gateway.call("GET", f"/v1/jobs/{job_id}/logs", "operator").status_code == 200
