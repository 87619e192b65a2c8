"""``GET /v1/runs/{id}/outputs/{output}`` answers ``If-None-Match`` (304) and one ``Range`` (206,
or 416 past the end) for those who read the run's data only: the owner, operators and admins."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from security_support import Gateway

import mnemos

TEXT = "0123456789abcdefghij"


@pytest.fixture(scope="module")
def output(gateway: Gateway) -> dict[str, Any]:
    """A developer's finished run of ``echo-text`` whose output ``out`` holds ``TEXT``."""
    started = gateway.call("POST", "/v1/pipelines/echo-text/runs", "developer", json={"params": {"text": TEXT}})
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    gateway.finished_run(run_id, "developer")
    return {"run": run_id, "path": f"/v1/runs/{run_id}/outputs/out",
            "etag": f'"sha256:{hashlib.sha256(TEXT.encode()).hexdigest()}"'}  # fmt: skip


def _get(gateway: Gateway, output: dict[str, Any], who: str | None = "developer", **headers: str) -> httpx.Response:
    return gateway.call("GET", output["path"], who, headers={k.replace("_", "-"): v for k, v in headers.items()})


def test_if_none_match_naming_the_etag_is_304(gateway: Gateway, output: dict[str, Any]) -> None:
    whole = _get(gateway, output)
    assert whole.status_code == 200 and whole.content == TEXT.encode() and whole.headers["etag"] == output["etag"]
    assert whole.headers["accept-ranges"] == "bytes"
    digest = output["etag"].strip('"')
    for tag in (output["etag"], f"W/{output['etag']}", "*", f'"sha256:{"0" * 64}", {output["etag"]}'):
        cached = _get(gateway, output, if_none_match=tag)
        assert cached.status_code == 304 and cached.content == b"", (tag, cached.status_code, cached.text)
        assert cached.headers["etag"] == output["etag"] and cached.headers["x-mnemos-digest"] == digest
    changed = _get(gateway, output, if_none_match=f'"sha256:{"0" * 64}"')
    assert changed.status_code == 200 and changed.content == TEXT.encode()


@pytest.mark.parametrize(("header", "first", "last"), [("bytes=2-5", 2, 5), ("bytes=15-", 15, 19),
                                                       ("bytes=-3", 17, 19), ("bytes=0-999", 0, 19),
                                                       ("bytes=-50", 0, 19), ("BYTES = 4 - 4", 4, 4)])  # fmt: skip
def test_one_range_is_206(gateway: Gateway, output: dict[str, Any], header: str, first: int, last: int) -> None:
    part = _get(gateway, output, range=header)
    assert part.status_code == 206, part.text
    assert part.content == TEXT.encode()[first : last + 1]
    assert part.headers["content-range"] == f"bytes {first}-{last}/{len(TEXT)}"
    assert part.headers["content-length"] == str(last - first + 1) and part.headers["etag"] == output["etag"]
    matching = _get(gateway, output, range=header, if_range=output["etag"])
    assert matching.status_code == 206 and matching.content == part.content


def test_other_ranges_get_the_whole_output_or_416(gateway: Gateway, output: dict[str, Any]) -> None:
    for header in ("bytes=0-1,4-5", "bytes=5-2", "items=0-1", "bytes=x-"):
        whole = _get(gateway, output, range=header)
        assert whole.status_code == 200 and whole.content == TEXT.encode(), (header, whole.status_code)
    stale = _get(gateway, output, range="bytes=0-1", if_range=f'"sha256:{"0" * 64}"')  # changed since: all of it
    assert stale.status_code == 200 and stale.content == TEXT.encode()
    assert stale.headers["accept-ranges"] == "bytes"  # ranges are still served: this one was stale
    for header in (f"bytes={len(TEXT)}-", "bytes=999-1000", "bytes=-0"):
        past = _get(gateway, output, range=header)
        assert past.status_code == 416, (header, past.status_code, past.text)
        assert past.headers["content-range"] == f"bytes */{len(TEXT)}" and past.json()["error"]["param"] == "range"


def test_304_and_206_only_for_those_who_read_the_runs_data(gateway: Gateway, output: dict[str, Any]) -> None:
    conditional = {"if_none_match": output["etag"], "range": "bytes=0-1"}
    other = _get(gateway, output, "developer-b", **conditional)  # another developer: no such run
    assert other.status_code == 404 and other.json()["error"]["param"] == "run_id", other.text
    viewer = _get(gateway, output, "viewer", **conditional)
    assert viewer.status_code == 403 and viewer.json()["error"]["param"] == "role", viewer.text
    assert _get(gateway, output, None, **conditional).status_code == 401
    for who in ("operator", "admin"):
        assert _get(gateway, output, who, range="bytes=0-1").content == b"01"
    with mnemos.connect(gateway.url, api_key=gateway.keys["developer"]) as client:  # the remote client reads it
        assert client.pipelines.get(output["run"]).read("out") == TEXT.encode()
