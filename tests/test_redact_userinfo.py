"""``redact_userinfo``: what messages, logs and lineage show of a URL that carries a credential."""

from __future__ import annotations

import pytest

from mnemos.errors import redact_userinfo


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://user:token@host/x.git", "https://***@host/x.git"),
        # a raw "@" in the password: everything up to the authority's last "@" is the credential
        ("unable to access 'http://u:pa@ss@127.0.0.1:9/ops.git/'", "unable to access 'http://***@127.0.0.1:9/ops.git/'"),
        ("s3://AKIA:se#cr@t@bucket/key, https://h/a@b", "s3://***@bucket/key, https://h/a@b"),  # a path @: no userinfo
        ("git@github.com:org/x.git https://host/x", "git@github.com:org/x.git https://host/x"),
    ],
)  # fmt: skip
def test_the_whole_userinfo_is_masked(text: str, shown: str) -> None:
    assert redact_userinfo(text) == shown
