"""A job's console page shows its logs to exactly those ``GET /v1/jobs/{id}/logs`` answers: its owner
and credentials that hold ``execute``. An operator or admin key scoped without ``execute`` (a
read-only operator, a team's identity admin) reads the state of another's job, not what it printed
(docs/guides/security.md, "Ownership"), on the page as on the API."""

from __future__ import annotations

import uuid

import httpx
from security_support import Gateway, T, function_doc

COOKIE = "mnemos_session"


def _sign_in(gateway: Gateway, key: str) -> str:
    signed_in = httpx.post(f"{gateway.url}/ui/signin", data={"api_key": key}, follow_redirects=False, timeout=60)
    assert signed_in.status_code == 303, signed_in.text[-1000:]
    return str(signed_in.cookies[COOKIE])


def test_the_job_page_shows_logs_only_to_those_the_api_shows_them(gateway: Gateway) -> None:
    tag = uuid.uuid4().hex[:8]
    gateway.client.apply([function_doc("printer", f"{T}:ticker", {
        "type": "object", "properties": {"count": {"type": "integer"}, "interval": {"type": "number"},
                                         "text": {"type": "string"}}, "additionalProperties": False})])  # fmt: skip
    line = f"PRIVATE-LINE-{tag}"
    sent = gateway.call("POST", "/v1/jobs", "developer",
                        json={"function": "printer", "kwargs": {"count": 1, "interval": 0, "text": line}})  # fmt: skip
    assert sent.status_code == 200, sent.text
    job = sent.json()["id"]
    done = gateway.call("GET", f"/v1/jobs/{job}", "developer", params={"wait": 60}).json()
    assert done["status"] == "succeeded", done
    read_only = gateway.store.create_api_key(f"ro-operator-{tag}", "operator",
                                             scopes=("read-artifacts", "read-lineage")).secret  # fmt: skip
    for who, key in (("developer", gateway.keys["developer"]), ("admin", gateway.keys["admin"]),
                     ("viewer", gateway.keys["viewer"]), ("read-only operator", read_only)):  # fmt: skip
        api = gateway.call("GET", f"/v1/jobs/{job}/logs", key)
        cookie = _sign_in(gateway, key)
        try:
            page = httpx.get(f"{gateway.url}/ui/jobs/{job}", cookies={COOKIE: cookie}, timeout=60)
        finally:
            httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)
        assert page.status_code == 200, (who, page.text[-600:])
        if api.status_code == 200:
            assert line in api.text and line in page.text, who
        else:
            assert api.status_code == 403, (who, api.text)
            assert line not in page.text, f"the {who}'s page shows logs the API refuses it"
            reason = api.json()["error"]["message"].replace("'", "&#39;")
            assert 'id="logs-hidden"' in page.text and reason in page.text, (who, page.text[-800:])
    assert gateway.call("GET", f"/v1/jobs/{job}/logs", read_only).status_code == 403  # (the case this is about)
