"""``mnemos token create --team`` over a gateway names the option, not the HTTP body's field.

With a gateway URL, ``--team 'a b'`` was sent as is and the gateway's answer printed: ``error:
body.team: String should match pattern '^[A-Za-z0-9_.@:-]{0,128}$'`` (a field the user never
typed, and a regular expression). It is now checked before anything is asked, as without a gateway.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize("team", ["a b", "x" * 129, "ré"])
def test_a_bad_team_is_refused_before_the_gateway_is_asked(team: str, capsys: Any, monkeypatch: Any) -> None:
    from mnemos.cli import main

    monkeypatch.setenv("MNEMOS_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MNEMOS_API_KEY", "mk_0000000000000000_unused")
    with pytest.raises(SystemExit) as exited:
        main(["token", "create", "--name", "ci-bot", "--role", "developer", "--api-key", "--team", team])
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert err.strip() == "error: invalid team: use 1-128 letters, digits or -_.@:", err
