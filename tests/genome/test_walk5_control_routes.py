"""What the gateway's control routes answered that they should not.

- ``PUT /v1/files/sha256:ABC`` (a digest that is none) answered ``digest: String should match
  pattern '^sha256:[0-9a-f]{64}$'``, the regular expression, where the other path parts say what
  they must be.
- An Adapter's ``auth.header`` or ``auth.scheme`` that no HTTP request can carry was stored, and
  every request relayed through the Adapter was a 500.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.mark.parametrize("method", ["GET", "PUT"])
@pytest.mark.parametrize("digest", ["sha256:ABC", "sha256:" + "A" * 64, "md5:" + "0" * 32])
def test_a_file_digest_that_is_none_says_what_a_digest_is(control: Any, method: str, digest: str) -> None:
    answer = control.request(method, f"/v1/files/{digest}", content=b"hello")
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["param"] == "digest" and "64 lowercase hex digits" in error["message"], error
    assert "pattern" not in error["message"], error


# An Adapter's `auth.header` and `auth.scheme` were any text: `PUT …/adapters/up` with
# `"auth": {"header": "Bad Header: x\r\nEvil", …}` was stored (200), and every chat request routed
# to it was then a 500 ("Forbidden control character detected in headers" in the gateway's log).
ADAPTER = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "up"},
           "spec": {"baseUrl": "http://127.0.0.1:9/v1", "models": ["m"],
                    "auth": {"secretRef": {"name": "up", "key": "key"}}}}  # fmt: skip


@pytest.mark.parametrize("field, value", [
    ("header", "Bad Header: x\r\nEvil"), ("header", "X-Key\n"), ("header", ""), ("header", "X Key"),
    ("scheme", "Bearer\r\n"), ("scheme", "Bearer token"),
])  # fmt: skip
def test_an_adapter_auth_header_or_scheme_that_no_request_can_carry_is_refused(control: Any, field: str,
                                                                              value: str) -> None:  # fmt: skip
    doc = {**ADAPTER, "spec": {**ADAPTER["spec"], "auth": {**ADAPTER["spec"]["auth"], field: value}}}
    answer = control.put("/apis/genome.mnemos.dev/v1/adapters/up", json=doc)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["param"] == f"spec.auth.{field}"
    assert control.get("/apis/genome.mnemos.dev/v1/adapters/up").status_code == 404  # stored nowhere



@pytest.mark.parametrize("source", ["/dev/zero", "sparse"])
def test_a_resource_file_past_16_mib_is_refused_not_read_to_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    """``mnemos validate -f /dev/zero`` (or a pipe that never ends) read until memory ran out."""
    from mnemos.cli import main

    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    for name in ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    path = source
    if source == "sparse":
        path = str(tmp_path / "big.yaml")
        with open(path, "wb") as big:
            big.truncate(16 * 1024 * 1024 + 1)
    with pytest.raises(SystemExit) as done:
        main(["validate", "-f", path])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and err == (f"error: {path}: more than 16 MiB; a resource file is smaller: split it, "
                                            "or keep large data in ENGRAM and name it by ref")  # fmt: skip
