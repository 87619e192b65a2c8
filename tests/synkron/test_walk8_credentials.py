"""Walk 8: a newcomer's credentials, given at run time from the CLI, are shown nowhere in clear.

- A run param that is a longer text holding a presigned URL (``-p note="see
  https://h/x?access_token=… now"``) was kept in clear in the run's state in ENGRAM and shown so by
  ``mnemos runs get`` and in the step's log: only a whole URL's query was sealed.
- A step's ``Authorization: "Bearer ${api_token}"`` (``--token=${hf_token}``) was refused as a
  credential written in the pipeline, though it writes only the scheme: the run gives the token."""

from __future__ import annotations

import json
from typing import Any

import sealed_support as sealed
from test_cli import cli


def test_a_presigned_url_in_a_longer_param_and_a_bearer_token_are_sealed_and_shown_masked(
    env: dict[str, str], pipelines: Any, package_settings: Any
) -> None:
    token, password = sealed.secrets()
    note = f"see https://h.example/x.jsonl?access_token={token}&download=true now"
    shown = "see https://h.example/x.jsonl?access_token=***&download=*** now"
    env_vars = [{"name": "NOTE", "value": "${note}"}, {"name": "AUTHORIZATION", "value": "Bearer ${api_token}"}]
    talk = {"name": "talk", "script": 'echo "note: $NOTE"; echo "auth: $AUTHORIZATION"', "env": env_vars}
    path = pipelines.write([talk], name="walk8", params={"note": "", "api_token": ""})
    code, out = cli(env, "run", str(path), "-p", f"note={note}", "-p", f"api_token={password}", "--no-progress")
    assert code == 0, out
    run_id = out.split("run ", 1)[1].split()[0]
    code, got = cli(env, "runs", "get", run_id, "-o", "json")
    assert code == 0, got
    state = json.loads(got)
    assert state["params"] == {"note": shown, "api_token": "***"}
    assert state["steps"]["talk"]["result"]["log"] == f"note: {shown}\nauth: Bearer ***\n"
    code, table = cli(env, "runs", "get", run_id)
    assert code == 0 and token not in table and password not in table
    stored = json.loads((sealed.root(package_settings) / "runs" / run_id / "state.json").read_text())
    assert stored["params"]["note"]["shown"] == shown and "$sealed" in stored["params"]["note"]
    assert sealed.leaks(sealed.root(package_settings), (token, password)) == []  # lineage's run record too
