"""What a sync shows of what it was given: a token in a repository URL's query, a --path no file may
have."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnemos.client import Client
from mnemos.config import load_settings
from mnemos.errors import NotFoundError, UnavailableError
from mnemos.wraith._git import redact
from mnemos.wraith.gitops import sync


@pytest.fixture()
def client(tmp_path: Path) -> Client:
    return Client(load_settings(engram={"uri": str(tmp_path / "engram")}))


def test_a_token_in_a_repository_urls_query_is_masked_in_errors(client: Client, tmp_path: Path) -> None:
    """`mnemos sync --repo 'https://host/ops.git?access_token=…'` printed the token in its error (and
    so in WRAITH's job log): only the URL's userinfo was masked."""
    repo = "https://127.0.0.1:1/org/ops.git?access_token=ghp_s3cr3tT0ken&x=1"  # nothing listens on port 1
    with pytest.raises(UnavailableError) as exc:
        sync(client, repo, "environments/dev", home=tmp_path / "home")
    assert "s3cr3t" not in exc.value.message and "access_token=***" in exc.value.message, exc.value.message
    written = [p for p in (tmp_path / "home").rglob("*") if p.is_file() and b"s3cr3t" in p.read_bytes()]
    assert written == []


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://u:tok@host/x.git?a=1&token=zz#top", "https://***@host/x.git?a=***&token=***#top"),
        (
            "unable to access 'https://host/x.git?t=abc/': refused",
            "unable to access 'https://host/x.git?t=***': refused",
        ),
        ("https://host/x.git", "https://host/x.git"),
        ("git@host:org/x.git", "git@host:org/x.git"),
        ("ref main?x=1 not found", "ref main?x=1 not found"),  # no URL: left as it is
    ],
)
def test_redact_masks_userinfo_and_query_values(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_a_path_too_long_for_a_file_is_not_found_named_as_given(client: Client, ops_repo, tmp_path: Path) -> None:
    """A --path of 300 characters failed with the working copy's own path (`$MNEMOS_HOME/gitops/<hash>/
    aaa…: File name too long`): errors name paths inside the repository."""
    home = tmp_path / "home"
    with pytest.raises(NotFoundError) as exc:
        sync(client, str(ops_repo.root), "a" * 300, home=home)
    assert exc.value.param == "path" and str(home) not in exc.value.message
    assert "does not exist in the repository" in exc.value.message
