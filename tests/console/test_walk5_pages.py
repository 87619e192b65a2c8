"""Walk 5 of the console (no cluster: the console's router over an edge guard and a local ENGRAM).

- A credential scoped to ``manage-identities`` alone (a team's identity admin) read every
  principal's usage and refused sign-ins on the Keys page, which ``GET /v1/usage`` refuses it (403:
  usage is read with ``read-artifacts``). The page now lists its credentials and says why it shows
  no usage, in the API's words; a page such a credential may not open says the same (it said the
  role, ``admin``, may not read).
- A model's page asked to compare a generation with itself (``?a=2&b=2``) said "Only one
  generation so far." of a model with two, and dropped the form that picks the generations.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest
from console_support import local_console
from fastapi.testclient import TestClient
from tests_support import model_doc

from mnemos.relay.console.session import COOKIE

USAGE = [{"principal": "otto", "team": "", "model": "m", "requests": 7, "prompt_tokens": 1, "completion_tokens": 1,
          "spend": 9.0, "cached": 0}]  # fmt: skip


@pytest.fixture()
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return local_console(tmp_path, monkeypatch, USAGE)


def _sign_in(console: dict[str, Any], key: str) -> TestClient:
    http: TestClient = console["http"]
    signed_in = http.post("/ui/signin", data={"api_key": key}, follow_redirects=False)
    assert signed_in.status_code == 303 and COOKIE in http.cookies, signed_in.text
    return http


def test_an_identity_admin_lists_credentials_but_reads_no_usage(console: dict[str, Any]) -> None:
    key = console["store"].create_api_key("ida", "admin", scopes=["manage-identities"]).secret
    http = _sign_in(console, key)
    page = http.get("/ui/keys")
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    assert 'aria-label="Credentials"' in text and "<td>ida</td>" in text  # its credentials, as GET /v1/tokens
    assert 'aria-label="Usage per principal"' not in text and "otto" not in text  # no one's usage
    assert ("Usage not shown: the credential of 'ida' (role 'admin') is scoped to manage-identities and may not "
            "'read-artifacts'.") in text  # fmt: skip
    refused = http.get("/ui/models")  # a page it may not open says why in the same words (not "role 'admin'")
    assert refused.status_code == 403
    assert "is scoped to manage-identities and may not &#39;read-artifacts&#39;" in refused.text


def test_an_admin_reads_usage_on_the_keys_page(console: dict[str, Any]) -> None:
    http = _sign_in(console, console["store"].create_api_key("root", "admin").secret)
    page = http.get("/ui/keys")
    assert page.status_code == 200 and 'aria-label="Usage per principal"' in page.text
    assert "<td>otto</td><td>7</td>" in page.text and "Usage not shown" not in page.text


def test_a_generation_compared_with_itself_keeps_the_form_and_says_so(console: dict[str, Any]) -> None:
    from mnemos.genome import Registry
    from mnemos.genome.kinds import parse_resource

    registry = Registry(console["engram"])
    for version in ("1", "2"):
        registry.apply(parse_resource(model_doc("echo-diff", version=version)))
    http = _sign_in(console, console["store"].create_api_key("vic", "viewer").secret)
    same = http.get("/ui/models/echo-diff", params={"a": 2, "b": 2})
    assert same.status_code == 200, same.text
    assert "Only one generation so far" not in same.text
    assert 'aria-label="Compare generations"' in same.text and 'name="a" type="number" min="1" value="2"' in same.text
    assert "A generation is the same as itself: pick two different ones." in same.text
    diff = http.get("/ui/models/echo-diff", params={"a": 1, "b": 2}).text
    assert '<pre class="diff">' in diff and "+  version: &#39;2&#39;" in diff and 'id="no-diff"' not in diff
