"""An API key pasted where a name, a team or a ttl goes is refused without being stored or echoed.

``mnemos token create --name mk_<id>_<secret> --role viewer`` minted a token whose subject was the
key: stored in the clear, listed by ``mnemos token list`` and written to every audit record of its
holder (``--team`` the same); ``--ttl mk_…`` printed the key back in its error.
"""

from __future__ import annotations

from typing import Any

import pytest

from mnemos.engram import Engram
from mnemos.errors import ValidationError
from mnemos.soul.apikeys import new_api_key
from mnemos.soul.keys import KeyRing
from mnemos.soul.store import IdentityStore


def test_a_name_or_team_that_is_an_api_key_is_refused(local_engram: Engram) -> None:
    store = IdentityStore(local_engram, KeyRing(local_engram))
    pasted = new_api_key()[2]
    for create in (store.create_api_key, store.create_token):
        with pytest.raises(ValidationError, match="starts as an API key") as exc:
            create(pasted, "viewer")
        assert exc.value.param == "name" and pasted not in exc.value.message
        with pytest.raises(ValidationError, match="starts as an API key") as exc:
            create("ci-bot", "viewer", team=pasted)
        assert exc.value.param == "team" and pasted not in exc.value.message
    assert store.list(include_inactive=True) == []
    assert store.create_api_key("mk-bot", "viewer").name == "mk-bot"  # (only the key's own prefix is refused)


def test_a_ttl_that_is_an_api_key_is_not_echoed(capsys: Any, monkeypatch: Any, tmp_path: Any) -> None:
    from mnemos.cli import main

    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path))
    pasted = new_api_key()[2]
    with pytest.raises(SystemExit) as exited:
        main(["token", "create", "--name", "ci-bot", "--role", "viewer", "--ttl", pasted])
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert err.strip() == "error: --ttl is not a duration (e.g. 30m, 1h, 7d)", err
    with pytest.raises(SystemExit):
        main(["token", "create", "--name", "ci-bot", "--role", "viewer", "--ttl", "1hour"])
    assert "--ttl '1hour' is not a duration" in capsys.readouterr().err  # a mistyped duration is still shown
