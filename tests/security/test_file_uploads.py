"""``PUT /v1/files/{digest}`` (a pipeline's files) needs the verb ``apply``: a developer or a viewer
cannot store bytes on the platform, and the bytes must be those of the digest in the path."""

from __future__ import annotations

import hashlib

from security_support import Gateway


def test_only_apply_stores_a_file_and_only_under_its_digest(gateway: Gateway) -> None:
    data = b"a pipeline's input file\n"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    for who in ("developer", "viewer"):
        refused = gateway.call("PUT", f"/v1/files/{digest}", who, content=data)
        assert refused.status_code == 403 and refused.json()["error"]["param"] == "role", (who, refused.text)
    assert not gateway.client.engram.has(digest)
    assert gateway.call("PUT", f"/v1/files/{digest}", content=data).status_code == 401
    other = "sha256:" + hashlib.sha256(b"other").hexdigest()
    wrong = gateway.call("PUT", f"/v1/files/{other}", "operator", content=data)
    assert wrong.status_code == 422 and wrong.json()["error"]["param"] == "digest", wrong.text
    stored = gateway.call("PUT", f"/v1/files/{digest}", "operator", content=data)
    assert stored.status_code == 200 and gateway.client.engram.get(digest) == data, stored.text
