"""The console's pages answer as the API does for the same caller (docs/guides/console.md): an
item of another developer's embedding space is not found on the Lineage page, exactly as
``GET /v1/lineage/space:…`` answers it, never a graph that tells the space and its items exist."""

from __future__ import annotations

import re
import uuid

import httpx
from security_support import Gateway

COOKIE = "mnemos_session"


def _sign_in(gateway: Gateway, who: str) -> str:
    signed_in = httpx.post(f"{gateway.url}/ui/signin", data={"api_key": gateway.keys[who]}, follow_redirects=False,
                           timeout=60)  # fmt: skip
    assert signed_in.status_code == 303, signed_in.text[-1000:]
    return str(signed_in.cookies[COOKIE])


def _space(gateway: Gateway, space: str, owner: str) -> None:
    """A space as an index step leaves it, owned by ``owner`` (one item, ``item-0``)."""
    engram = gateway.client.engram
    records = engram.put(b'{"id": "item-0", "text": "PRIVATE-ITEM-TEXT"}\n')
    manifest = {"space": space, "count": 1, "model": {"name": "none"}, "run": "r", "records": records,
                "owner": owner, "team": ""}  # fmt: skip
    engram.write_json(f"spaces/{space}/manifest.json", manifest)


def test_the_lineage_page_of_anothers_space_item_is_not_found_as_on_the_api(gateway: Gateway) -> None:
    tag = uuid.uuid4().hex[:6]
    theirs, mine = f"theirs-{tag}", f"mine-{tag}"
    _space(gateway, theirs, "developer-b")
    _space(gateway, mine, "developer")
    for who in ("developer", "viewer", "operator"):
        cookie = _sign_in(gateway, who)
        try:
            for space in (theirs, mine, f"nothing-{tag}"):
                node = f"space:{space}/item-0"
                api = gateway.call("GET", f"/v1/lineage/{node}", who)
                page = httpx.get(f"{gateway.url}/ui/lineage", params={"id": node}, cookies={COOKIE: cookie}, timeout=60)
                assert page.status_code == api.status_code, (who, space, page.status_code, api.text)
                shown = re.findall(r'<td><a href="/ui/lineage\?id=[^"]*">([^<]*)</a>', page.text)
                if api.status_code == 404:
                    assert node not in shown and "PRIVATE-ITEM-TEXT" not in page.text, (who, space)
                    assert f"space &#39;{space}&#39; not found" in page.text, page.text[-600:]
                else:
                    assert node in shown, (who, space, page.text[-600:])
        finally:
            httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)


def test_the_lineage_page_refuses_an_id_the_api_refuses(gateway: Gateway) -> None:
    cookie = _sign_in(gateway, "developer")
    try:
        node = "job:" + "a" * 600  # longer than any id GET /v1/lineage/{id} takes (512)
        api = gateway.call("GET", f"/v1/lineage/{node}", "developer")
        page = httpx.get(f"{gateway.url}/ui/lineage", params={"id": node}, cookies={COOKIE: cookie}, timeout=60)
        assert api.status_code == page.status_code == 422, (page.status_code, api.text)
        assert "id: at most 512 characters" in page.text and node not in page.text
    finally:
        httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)
