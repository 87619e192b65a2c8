"""Query parameters of ``/v1/tokens*``: ``GET /v1/tokens?al=true`` (a typo of ``all``) listed the active
credentials only, as if the parameter were not there, ``POST /v1/tokens?foo=1`` minted and
``DELETE /v1/tokens/{id}?foo=1`` revoked. Each is now a 422 naming the parameter (and the ones the
route takes) before anything is done, as on the other control routes; a parameter given twice is a
422 too. The caller is authenticated first: without a credential it is a 401, whatever the query."""

from __future__ import annotations

from typing import Any

from tests_support import refused_422


def test_an_unknown_query_parameter_is_a_422_naming_it_and_nothing_is_done(token_gateway: Any) -> None:
    client, headers, store = token_gateway
    victim = store.create_api_key("victim", "viewer")
    before = {d["id"] for d in store.list(include_inactive=True)}

    listed = client.get("/v1/tokens", params={"al": "true"}, headers=headers)
    assert "al: not a query parameter of this route (it takes all)" in refused_422(listed, "al")
    minted = client.post("/v1/tokens", params={"foo": "1"}, json={"name": "bob", "role": "viewer"}, headers=headers)
    assert "(it takes none)" in refused_422(minted, "foo")
    revoked = client.delete(f"/v1/tokens/{victim.id}", params={"foo": "1"}, headers=headers)
    refused_422(revoked, "foo")

    assert {d["id"] for d in store.list(include_inactive=True)} == before  # nothing minted
    assert victim.id in {d["id"] for d in store.list()}  # nothing revoked


def test_a_parameter_given_twice_is_a_422_and_the_declared_one_still_works(token_gateway: Any) -> None:
    client, headers, store = token_gateway
    revoked = store.create_api_key("gone", "viewer")
    store.revoke(revoked.id)
    twice = client.get("/v1/tokens?all=false&all=true", headers=headers)
    assert "given more than once" in refused_422(twice, "all")
    everything = client.get("/v1/tokens", params={"all": "true"}, headers=headers)
    assert everything.status_code == 200 and revoked.id in {d["id"] for d in everything.json()["data"]}
    active = client.get("/v1/tokens", headers=headers)
    assert active.status_code == 200 and revoked.id not in {d["id"] for d in active.json()["data"]}


def test_the_caller_is_authenticated_before_the_query_is_read(token_gateway: Any) -> None:
    client, _, store = token_gateway
    viewer = {"Authorization": f"Bearer {store.create_api_key('vera', 'viewer').secret}"}
    for method in ("GET", "POST"):
        anonymous = client.request(method, "/v1/tokens", params={"foo": "1"}, json={"name": "x", "role": "viewer"})
        assert anonymous.status_code == 401, anonymous.text
        lacking = client.request(method, "/v1/tokens", params={"foo": "1"}, json={"name": "x", "role": "viewer"},
                                 headers=viewer)  # fmt: skip
        assert lacking.status_code == 403, lacking.text
