"""Lineage and the audit log by the ownership rule of jobs and runs (docs/guides/security.md,
"Ownership"), and the console's forms against cross-site posts, over real HTTP:

- ``GET /v1/lineage/{id}`` (and ``/ui/lineage``): a developer asking for another's run or job gets
  404, as for an id that does not exist, and a graph of a shared node holds none of another's
  nodes; a viewer gets every node's metadata but no run params, error texts or request callers;
- audit events (``/ui/audit``, ``/v1/lineage/audit:…``): another principal's only for operators
  and admins;
- console ``POST`` forms (sign-in included) from another site's page are refused with 403; the
  session cookie is ``Secure`` when the request came over HTTPS.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from security_support import Gateway, function_doc, say_pipeline
from tests_support import until

COOKIE = "mnemos_session"
SECRET = "BOB-LINEAGE-SECRET"
T = "mnemos.cortex.testing"
SAY = say_pipeline("lineage-say", "DEFAULT")
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def owned(gateway: Gateway) -> dict[str, str]:
    """The developer's failed run and failed job, both carrying SECRET (in params and error texts)."""
    message = {"type": "object", "properties": {"message": {"type": "string"}}}
    gateway.client.apply([function_doc("lineage-telltale", f"{T}:fail", message), SAY])
    body = {"function": "lineage-telltale", "maxAttempts": 1, "kwargs": {"message": f"{SECRET} job error"}}
    sent = gateway.call("POST", "/v1/jobs", "developer", json=body)
    assert sent.status_code == 200, sent.text
    started = gateway.call("POST", "/v1/pipelines/lineage-say/runs", "developer",
                           json={"params": {"text": f"{SECRET}-param", "code": 3}})  # fmt: skip
    assert started.status_code == 202, started.text
    job, run = sent.json()["id"], started.json()["id"]
    deadline = time.monotonic() + 180  # for all of it

    def read(path: str, ready: Callable[[httpx.Response], bool], interval: float = 0.5) -> None:
        until(lambda: gateway.call("GET", path, "operator"), path, ready=ready, timeout=deadline - time.monotonic(),
              interval=interval)  # fmt: skip

    read(f"/v1/jobs/{job}?wait=30", lambda r: r.json()["status"] == "failed", interval=0)  # a long poll
    read(f"/v1/runs/{run}", lambda r: r.json()["status"] == "failed")
    for node in (f"run:{run}", f"job:{job}"):  # lineage is written beside the journal and the run's state
        read(f"/v1/lineage/{node}", lambda r: SECRET in r.text)
    return {"job": job, "run": run}


def _nodes(resp: httpx.Response) -> dict[str, dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    return {n["id"]: n for n in resp.json()["nodes"]}


def _sign_in(gateway: Gateway, who: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/ui/signin", data={"api_key": gateway.keys[who]}, headers=headers,
                      follow_redirects=False, timeout=60)  # fmt: skip


def _sign_out(gateway: Gateway, cookie: str) -> None:
    httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)


# -- lineage ----------------------------------------------------------------------------------------
def test_a_developer_gets_404_for_the_lineage_of_anothers_run_or_job(gateway: Gateway, owned: dict[str, str]) -> None:
    cookie = str(_sign_in(gateway, "developer-b").cookies[COOKIE])
    for node in (f"run:{owned['run']}", owned["run"], f"job:{owned['job']}", f"step:{owned['run']}/say"):
        refused = gateway.call("GET", f"/v1/lineage/{node}", "developer-b")
        unknown = gateway.call("GET", f"/v1/lineage/{node}x", "developer-b")  # an id that does not exist
        assert refused.status_code == unknown.status_code == 404, refused.text
        assert SECRET not in refused.text
        error, other = refused.json()["error"], unknown.json()["error"]
        assert error["message"] == other["message"].replace(f"'{node}x'", f"'{node}'") and error["param"] == "node_id"
        page = httpx.get(f"{gateway.url}/ui/lineage", params={"id": node}, cookies={COOKIE: cookie}, timeout=60)
        assert page.status_code == 404 and "no lineage for" in page.text, page.text[-1000:]
    _sign_out(gateway, cookie)
    # the pipeline is shared: the other developer's graph of it holds none of the owner's runs
    graph = gateway.call("GET", "/v1/lineage/resource:Pipeline/lineage-say@1", "developer-b")
    assert graph.status_code == 200 and owned["run"] not in graph.text and SECRET not in graph.text, graph.text[:2000]


def test_a_viewer_reads_lineage_metadata_but_no_data(gateway: Gateway, owned: dict[str, str]) -> None:
    run_id, job_id = owned["run"], owned["job"]
    for node in (f"run:{run_id}", f"job:{job_id}", "resource:Pipeline/lineage-say@1"):
        resp = gateway.call("GET", f"/v1/lineage/{node}", "viewer")
        assert resp.status_code == 200 and SECRET not in resp.text, resp.text[:3000]
    nodes = _nodes(gateway.call("GET", f"/v1/lineage/run:{run_id}", "viewer"))
    run = nodes[f"run:{run_id}"]
    assert run["owner"] == "developer-user" and run["attrs"]["status"] == "failed"
    assert run["attrs"]["params"] == {"text": None, "code": None} and "params" in run["withheld"]
    assert "details withheld" in run["attrs"]["error"]
    step = nodes[f"step:{run_id}/say"]
    assert step["attrs"]["status"] == "failed" and "details withheld" in step["attrs"]["error"]
    job = _nodes(gateway.call("GET", f"/v1/lineage/job:{job_id}", "viewer"))[f"job:{job_id}"]
    assert job["attrs"]["error"].startswith("RuntimeError (details withheld")
    for who in ("developer", "operator", "admin"):  # the owner and operators read everything
        text = gateway.call("GET", f"/v1/lineage/run:{run_id}", who).text
        assert f"{SECRET}-param" in text and "withheld" not in text, (who, text[:2000])
        assert f"{SECRET} job error" in gateway.call("GET", f"/v1/lineage/job:{job_id}", who).text


# -- audit ------------------------------------------------------------------------------------------
def _audit_of(gateway: Gateway, action: str, subject: str | None) -> str:
    """The id of a newest audit event ``action`` of ``subject`` (waits for the edge's flush)."""
    from mnemos.trace.lineage import events

    found = until(lambda: [ev["id"] for ev in events(gateway.client.engram) if ev.get("type") == "audit"
                           and (ev.get("attrs") or {}).get("action") == action
                           and (ev.get("attrs") or {}).get("subject") == subject],
                  f"an audit event {action} of {subject}", timeout=30, interval=0.25)  # fmt: skip
    return str(found[-1])


def _who(page: str) -> set[str]:
    """The "Who" column of the audit page."""
    return {html.unescape(w) for w in re.findall(r'<td class="when">[^<]*</td><td>([^<]*)</td>', page)}


def test_audit_events_of_others_are_for_operators_and_admins_only(gateway: Gateway) -> None:
    cookies = {who: str(_sign_in(gateway, who).cookies[COOKIE]) for who in ("developer", "developer-b", "viewer",
                                                                              "operator")}  # fmt: skip
    try:
        # a refused write of the developer (with their key id and address) and one of no one
        assert gateway.call("DELETE", "/v1/secrets/x", "developer").status_code == 403
        assert gateway.call("GET", "/v1/whoami", "mk_not-a-key").status_code == 401
        refusal = _audit_of(gateway, "auth.refused", "developer-user")
        anonymous = _audit_of(gateway, "auth.refused", None)
        for who, own in (("developer-b", "developer-b-user"), ("viewer", "viewer-user")):
            page = httpx.get(f"{gateway.url}/ui/audit", cookies={COOKIE: cookies[who]}, timeout=60)
            assert page.status_code == 200, page.text[-1000:]
            shown = _who(page.text)
            assert shown and shown <= {own, f"apikey:{own}", f"token:{own}"}, shown  # their own sign-in, only
            assert "developer-user" not in page.text and "admin-user" not in page.text
            for event in (refusal, anonymous):
                assert gateway.call("GET", f"/v1/lineage/{event}", who).status_code == 404
        mine = httpx.get(f"{gateway.url}/ui/audit", cookies={COOKIE: cookies["developer"]}, timeout=60).text
        from mnemos.trace.lineage import events

        sessions = [(ev.get("attrs") or {}).get("actor") for ev in events(gateway.client.engram)
                    if (ev.get("attrs") or {}).get("name") == "developer-user"
                    and (ev.get("attrs") or {}).get("action") == "identity.created"]  # fmt: skip
        assert "apikey:developer-user" in sessions and "developer-user" not in sessions, sessions  # as the API's
        assert "developer-user" in _who(mine) and "developer-b-user" not in mine
        own = _nodes(gateway.call("GET", f"/v1/lineage/{refusal}", "developer"))[refusal]
        assert own["attrs"]["client"] and own["attrs"]["grant_id"]  # one's own refusals, whole
        ops = httpx.get(f"{gateway.url}/ui/audit", cookies={COOKIE: cookies["operator"]}, timeout=60).text
        assert {"apikey:developer-user", "apikey:developer-b-user", "apikey:viewer-user"} <= _who(ops)
        for who in ("operator", "admin"):
            for event in (refusal, anonymous):
                assert gateway.call("GET", f"/v1/lineage/{event}", who).status_code == 200
    finally:
        for cookie in cookies.values():
            _sign_out(gateway, cookie)


# -- console forms: login CSRF, Secure cookie --------------------------------------------------------
@pytest.mark.parametrize("headers", [{"Origin": EVIL}, {"Origin": "null"}, {"Referer": f"{EVIL}/login.html"},
                                     {"Origin": EVIL, "Referer": "{url}/ui/signin"}])  # fmt: skip
def test_a_sign_in_posted_from_another_site_is_refused(gateway: Gateway, headers: dict[str, str]) -> None:
    headers = {k: v.format(url=gateway.url) for k, v in headers.items()}
    refused = _sign_in(gateway, "developer", **headers)
    assert refused.status_code == 403, refused.text[-1000:]
    assert "another site" in refused.text and COOKIE not in refused.headers.get("set-cookie", "")


@pytest.mark.parametrize("header", ["Origin", "Referer"])
def test_a_sign_in_from_the_consoles_own_page_is_accepted(gateway: Gateway, header: str) -> None:
    source = gateway.url if header == "Origin" else f"{gateway.url}/ui/signin"
    signed_in = _sign_in(gateway, "developer", **{header: source})
    assert signed_in.status_code == 303, signed_in.text[-1000:]
    _sign_out(gateway, str(signed_in.cookies[COOKIE]))


def test_console_writes_from_another_site_are_refused(gateway: Gateway) -> None:
    from mnemos.relay.console.session import csrf_token

    marker = gateway.markers / "lineage-cancel"
    sent = gateway.call("POST", "/v1/jobs", "developer", json={"function": "waiter", "kwargs": {"path": str(marker)}})
    assert sent.status_code == 200, sent.text
    job = sent.json()["id"]
    cookie = str(_sign_in(gateway, "developer").cookies[COOKIE])
    try:
        form = {"csrf": csrf_token(cookie)}
        for path in (f"/ui/jobs/{job}/cancel", "/ui/signout"):
            refused = httpx.post(gateway.url + path, data=form, cookies={COOKIE: cookie}, headers={"Origin": EVIL},
                                 follow_redirects=False, timeout=60)  # fmt: skip
            assert refused.status_code == 403 and "another site" in refused.text, (path, refused.text[-1000:])
        assert gateway.call("GET", f"/v1/jobs/{job}", "developer").json()["status"] != "cancelled"
        assert httpx.get(f"{gateway.url}/ui/jobs", cookies={COOKIE: cookie}, timeout=60).status_code == 200
        done = httpx.post(f"{gateway.url}/ui/jobs/{job}/cancel", data=form, cookies={COOKIE: cookie},
                          headers={"Origin": gateway.url}, follow_redirects=False, timeout=60)  # fmt: skip
        assert done.status_code == 303, done.text[-1000:]  # from the console's own page
        assert gateway.call("GET", f"/v1/jobs/{job}?wait=30", "developer").json()["status"] == "cancelled"
    finally:
        marker.write_text("done")
        _sign_out(gateway, cookie)


def test_the_session_cookie_is_secure_when_the_request_came_over_https(gateway: Gateway) -> None:
    # Serve's proxy (uvicorn) takes X-Forwarded-Proto from a proxy on the loopback address (FORWARDED_ALLOW_IPS)
    for proto, secure in (("https", True), ("http", False)):
        signed_in = _sign_in(gateway, "viewer", **{"X-Forwarded-Proto": proto})
        assert signed_in.status_code == 303, signed_in.text[-1000:]
        attributes = [a.strip().lower() for a in signed_in.headers["set-cookie"].split(";")]
        assert ("secure" in attributes) is secure and "httponly" in attributes and "samesite=strict" in attributes
        _sign_out(gateway, str(signed_in.cookies[COOKIE]))


@pytest.mark.parametrize(("headers", "same"), [
    ({}, True),  # not a browser's form
    ({"origin": "https://gw.example"}, True),
    ({"origin": "https://GW.example:443"}, True),  # the default port, written out
    ({"referer": "https://gw.example/ui/signin?x=1"}, True),
    ({"origin": "https://gw.example.evil.test"}, False),
    ({"origin": "https://gw.example:8443"}, False),
    ({"origin": "http://gw.example:443"}, False),
    ({"origin": "null"}, False),
    ({"origin": "https://gw.example", "referer": "https://evil.test/"}, True),  # Origin decides when present
    ({"origin": "https://evil.test", "referer": "https://gw.example/ui/jobs"}, False),
    ({"referer": "javascript:alert(1)"}, False),
])  # fmt: skip
def test_same_origin_compares_origin_or_referer_with_host(headers: dict[str, str], same: bool) -> None:
    from starlette.requests import Request

    from mnemos.relay.console.session import same_origin

    raw = [(b"host", b"gw.example")] + [(k.encode(), v.encode()) for k, v in headers.items()]
    request = Request({"type": "http", "method": "POST", "path": "/ui/signin", "headers": raw, "scheme": "https"})
    assert same_origin(request) is same


@pytest.mark.parametrize(("headers", "same"), [
    ({"origin": "https://mnemos.example"}, True),
    ({"origin": "https://MNEMOS.example:443"}, True),  # the default port, written out
    ({"referer": "https://mnemos.example/ui/signin?x=1"}, True),
    ({"origin": "http://mnemos.example"}, False),  # the scheme counts
    ({"origin": "https://mnemos.example:8443"}, False),  # and the port
    ({"origin": "https://gw.example"}, False),  # the Host it was sent to, not listed
    ({"origin": "https://mnemos.example.evil.test"}, False),
    ({"origin": "null"}, False),
    ({"referer": "http://mnemos.example/ui/jobs"}, False),
    ({}, True),  # neither header: no browser's cross-site form
])  # fmt: skip
def test_same_origin_with_allowed_origins_takes_those_exactly(headers: dict[str, str], same: bool) -> None:
    from starlette.requests import Request

    from mnemos.relay.console.session import same_origin

    raw = [(b"host", b"gw.example")] + [(k.encode(), v.encode()) for k, v in headers.items()]
    request = Request({"type": "http", "method": "POST", "path": "/ui/signin", "headers": raw, "scheme": "http"})
    assert same_origin(request, ["https://mnemos.example"]) is same
