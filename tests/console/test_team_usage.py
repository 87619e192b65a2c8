"""The Keys page shows a team's admin the usage of its team only, as it lists its team's credentials
(``mnemos.soul.http.manages``): the probe met a team-bound admin who saw every team's usage rows
while its credential list was its team's (no cluster: the console's router over an edge guard, a
ledger of fixed rows and a local ENGRAM)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from console_support import local_console

from mnemos.relay.console.session import COOKIE

_ROWS = [
    {"hour": 0.0, "principal": "rita", "team": "research", "model": "m", "requests": 2, "prompt_tokens": 3,
     "completion_tokens": 4, "spend": 0.5, "cached": 0},
    {"hour": 0.0, "principal": "otto", "team": "other", "model": "m", "requests": 7, "prompt_tokens": 1,
     "completion_tokens": 1, "spend": 9.0, "cached": 0},
    {"hour": 0.0, "principal": "nell", "team": "", "model": "m", "requests": 1, "prompt_tokens": 1,
     "completion_tokens": 1, "spend": 0.1, "cached": 0},
]  # fmt: skip


@pytest.fixture()
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from mnemos.soul._audit import audit_id
    from mnemos.trace.lineage import LineageWriter

    console = local_console(tmp_path, monkeypatch, _ROWS)
    lineage = LineageWriter(console["engram"])
    for subject, team in (("rita", "research"), ("otto", "other")):  # a refused request of each team's credential
        lineage.record(audit_id(), "audit", action="auth.refused", status=403, subject=subject, team=team,
                       grant_id=f"{subject}-key", reason="role 'viewer' may not 'deploy'")  # fmt: skip
    lineage.flush()
    return console


def _usage(console: dict[str, Any], key: str) -> dict[str, list[str]]:
    http = console["http"]
    signed_in = http.post("/ui/signin", data={"api_key": key}, follow_redirects=False)
    assert signed_in.status_code == 303, signed_in.text
    assert COOKIE in http.cookies  # the client keeps the session cookie
    page = http.get("/ui/keys")
    assert page.status_code == 200, page.text
    table = page.text.split('aria-label="Usage per principal"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    return {html.unescape(cells[0]): cells[1:] for cells in (re.findall(r"<td>(.*?)</td>", r, re.S) for r in rows)
            if cells}  # fmt: skip


def test_a_team_admin_sees_the_usage_of_its_team_only(console: dict[str, Any]) -> None:
    admin = console["store"].create_api_key("ada", "admin", team="research").secret
    rows = _usage(console, admin)
    assert set(rows) == {"rita"}, rows
    assert rows["rita"][:2] == ["2", "7"] and rows["rita"][3] == "1"  # requests, tokens; refused: its team's
    assert "otto" not in str(rows) and "nell" not in str(rows)


def test_an_admin_without_a_team_sees_every_teams_usage(console: dict[str, Any]) -> None:
    admin = console["store"].create_api_key("root", "admin").secret
    rows = _usage(console, admin)
    assert set(rows) == {"rita", "otto", "nell"}, rows
    assert rows["otto"][3] == "1"


def test_the_keys_page_shows_each_credentials_model_list(console: dict[str, Any]) -> None:
    store = console["store"]
    store.create_api_key("boxed", "developer", models=["tiny-chat", "minilm"])
    _usage(console, store.create_api_key("root", "admin").secret)  # signs in
    table = console["http"].get("/ui/keys").text.split('aria-label="Credentials"', 1)[1].split("</table>", 1)[0]
    rows = {cells[2]: cells for cells in (re.findall(r"<td>(.*?)</td>", r, re.S)
                                          for r in re.findall(r"<tr>(.*?)</tr>", table, re.S)) if cells}  # fmt: skip
    assert rows["boxed"][5] == "tiny-chat, minilm" and rows["root"][5] == "any"
