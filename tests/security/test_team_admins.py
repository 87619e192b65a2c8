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
