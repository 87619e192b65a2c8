"""What a security probe of the running gateway met around the console: its session cookie authorizes
nothing outside the console (a script that ``/docs`` loads from a CDN gets no credential from it),
ids and names no storage can hold are answered as the API answers them (never a 500 nor a storage
key), and the public ``/metrics`` names nodes by Ray id, never by IP address."""

from __future__ import annotations

import ipaddress
import time

import httpx
import pytest
from security_support import Gateway
from tests_support import until

COOKIE = "mnemos_session"
_ADD = {"a": 2, "b": 2}


def _sign_in(gateway: Gateway, who: str) -> str:
    signed_in = httpx.post(f"{gateway.url}/ui/signin", data={"api_key": gateway.keys[who]}, follow_redirects=False,
                           timeout=60)  # fmt: skip
    assert signed_in.status_code == 303, signed_in.text[-1000:]
    return str(signed_in.cookies[COOKIE])


def _status(gateway: Gateway, path: str, cookie: str | None, **headers: str) -> tuple[int, str]:
    """The status and content type of a GET (a stream is closed once its headers arrive)."""
    cookies = {COOKIE: cookie} if cookie else None
    with httpx.stream("GET", gateway.url + path, cookies=cookies, headers=headers, timeout=60) as answer:
        return answer.status_code, answer.headers.get("content-type", "")


def test_the_session_cookie_authorizes_no_api_request(gateway: Gateway) -> None:
    sent = gateway.call("POST", "/v1/jobs", "admin", json={"function": "adder", "kwargs": {"a": 1, "b": 2}})
    assert sent.status_code == 200, sent.text
    cookie = _sign_in(gateway, "admin")
    try:
        docs = {"Referer": f"{gateway.url}/docs", "Sec-Fetch-Site": "same-origin"}  # what a /docs script sends
        for path in ("/v1/tokens", f"/v1/jobs/{sent.json()['id']}", "/v1/secrets", "/v1/whoami",
                     "/v1/events?heartbeat=1", "/apis/genome.mnemos.dev/v1/models"):  # fmt: skip
            assert _status(gateway, path, cookie, **docs)[0] == 401, path
        # the console's own live updates: the same stream, at /ui/events, with the cookie only
        status, kind = _status(gateway, "/ui/events?types=job&heartbeat=1", cookie)
        assert status == 200 and kind.startswith("text/event-stream")
        assert _status(gateway, "/ui/events?heartbeat=1", None)[0] == 401
        assert _status(gateway, "/ui/events?types=secrets", cookie)[0] == 422  # its validation too
    finally:
        httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)


def test_a_copied_session_cookie_is_no_api_credential(gateway: Gateway) -> None:
    """The cookie's value is a SOUL token: sent as ``Authorization: Bearer`` (copied by a page on
    another port of the same host, which browsers send it to) it read, wrote and minted an admin
    API key outliving the session. A console session's token (``aud: console``) now works in the
    console only; the console itself still runs on it."""
    cookie = _sign_in(gateway, "admin")
    try:
        bearer = {"Authorization": f"Bearer {cookie}"}
        for method, path, body in (("GET", "/v1/whoami", None), ("GET", "/v1/secrets", None),
                                   ("POST", "/v1/jobs", {"function": "adder", "kwargs": _ADD}),
                                   ("POST", "/v1/tokens", {"name": "kept", "role": "admin", "apiKey": True}),
                                   ("GET", "/ui/events?heartbeat=1", None)):  # fmt: skip
            refused = httpx.request(method, gateway.url + path, json=body, headers=bearer, timeout=60)
            assert refused.status_code == 401, (path, refused.text)
            assert "console session's" in refused.json()["error"]["message"], refused.text
        assert _status(gateway, "/ui/events?heartbeat=1", cookie)[0] == 200  # the cookie, where it belongs
        page = httpx.get(f"{gateway.url}/ui/jobs", cookies={COOKIE: cookie}, timeout=60)
        assert page.status_code == 200 and "Sign in" not in page.text
        again = httpx.post(f"{gateway.url}/ui/signin", data={"api_key": cookie}, follow_redirects=False, timeout=60)
        assert again.status_code != 303  # nor a session opened with a session's token
    finally:
        httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)
    listed = gateway.call("GET", "/v1/tokens", "admin", params={"all": "true"}).json()["data"]
    assert any(d.get("audience") == "console" for d in listed)  # sessions are told apart from tokens


def test_the_console_event_stream_filters_as_v1_events_does(gateway: Gateway) -> None:
    cookie = _sign_in(gateway, "developer-b")
    try:
        with httpx.stream("GET", f"{gateway.url}/ui/events", params={"types": "job", "heartbeat": 1},
                          cookies={COOKIE: cookie}, timeout=60) as stream:  # fmt: skip
            assert stream.status_code == 200
            mine = gateway.call("POST", "/v1/jobs", "developer-b", json={"function": "adder", "kwargs": _ADD})
            theirs = gateway.call("POST", "/v1/jobs", "developer", json={"function": "adder", "kwargs": _ADD})
            assert mine.status_code == theirs.status_code == 200
            seen: list[str] = []
            deadline = time.monotonic() + 60
            for line in stream.iter_lines():
                seen += [line] if line.startswith("data: ") else []
                if f'"subject":"job:{mine.json()["id"]}"' in line and "job.succeeded" in line:
                    break
                assert time.monotonic() < deadline, seen
        assert any(mine.json()["id"] in s for s in seen), seen
        assert not any(theirs.json()["id"] in s for s in seen), "another developer's job reached the stream"
    finally:
        httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)


@pytest.mark.parametrize("length", [256, 274, 300])
def test_a_run_id_too_long_for_any_file_name_is_not_found(gateway: Gateway, length: int) -> None:
    engram = gateway.client.engram
    engram.write_json("runs/probe-long-ids/marker", {})  # runs/ exists: the long name is looked up in it
    cookie = _sign_in(gateway, "admin")
    try:
        run_id = "a" * length
        api = gateway.call("GET", f"/v1/runs/{run_id}", "admin")
        assert api.status_code == 404 and api.json()["error"]["param"] == "run_id", api.text[-500:]
        page = httpx.get(f"{gateway.url}/ui/runs/{run_id}", cookies={COOKIE: cookie}, timeout=60)
        assert page.status_code == 404 and "not found" in page.text, page.text[-500:]
    finally:
        engram.delete("runs/probe-long-ids/marker")
        httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)


def test_console_ids_no_resource_has_are_answered_as_the_api_does(gateway: Gateway) -> None:
    cookie = _sign_in(gateway, "admin")
    try:
        api = gateway.call("GET", "/v1/runs/x%00y", "admin")
        page = httpx.get(f"{gateway.url}/ui/runs/x%00y", cookies={COOKIE: cookie}, timeout=60)
        assert api.status_code == page.status_code == 404, (api.text, page.text[-500:])
        api = gateway.call("GET", "/apis/genome.mnemos.dev/v1/models/%2e%2e", "admin")
        page = httpx.get(f"{gateway.url}/ui/models/%2e%2e", cookies={COOKIE: cookie}, timeout=60)
        assert api.status_code == page.status_code == 422, (api.text, page.text[-500:])
        assert "registry/" not in page.text and "name" in page.text
    finally:
        httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)


def test_public_metrics_name_nodes_by_ray_id_not_by_address(gateway: Gateway) -> None:
    import ray

    sent = gateway.call("POST", "/v1/jobs?wait=60", "admin", json={"function": "adder", "kwargs": {"a": 1, "b": 1}})
    assert sent.status_code == 200, sent.text  # a NEURON worker has started and exported its GPUs
    node_ids = {n["NodeID"] for n in ray.nodes()}

    def series() -> list[str]:
        text = httpx.get(f"{gateway.url}/metrics", timeout=30).text
        return [line for line in text.splitlines() if line.startswith("mnemos_neuron_gpus{")]

    lines = until(series, "mnemos_neuron_gpus series", timeout=60, interval=1)  # pushed every second
    for line in lines:
        node = line.split('node="', 1)[1].split('"', 1)[0]
        with pytest.raises(ValueError):
            ipaddress.ip_address(node)
        assert node in node_ids, (node, node_ids)
