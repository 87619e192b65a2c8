"""``mnemos usage`` names the option the user typed.

``mnemos usage --by colour`` asked the gateway and printed its answer, ``error: group_by: 'colour'
is not a comma-separated list …``: a field of the HTTP API the user never typed. ``--by`` is now
checked before anything is asked (as ``--window`` is), and the error names ``--by``.
"""

from __future__ import annotations

from typing import Any

import pytest


def _cli(args: list[str], capsys: Any) -> tuple[int, str, str]:
    from mnemos.cli import main

    with pytest.raises(SystemExit) as exited:
        main(args)
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out, out.err


@pytest.mark.parametrize("by", ["colour", "team,colour", "", ",,"])
def test_a_bad_by_is_named_as_the_option_before_the_gateway_is_asked(by: str, capsys: Any,
                                                                     monkeypatch: Any) -> None:  # fmt: skip
    monkeypatch.setenv("MNEMOS_API_KEY", "mk_0000000000000000_unused")
    code, out, err = _cli(["usage", "--url", "http://127.0.0.1:9", "--by", by], capsys)  # nothing listens on 9
    assert code == 2, (code, err)
    assert err.startswith(f"error: --by {by!r}: give some of principal, team, model") and "group_by" not in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_answer_s_since_is_where_the_hourly_ledger_s_sum_starts() -> None:
    """``GET /v1/usage?window=1s`` answered ``since: now - 1`` over the whole current hour of the
    ledger (rows are per hour): requests made up to an hour before ``since`` were counted in it.
    ``since`` is now the start of the first hour counted, and never before the epoch."""
    import asyncio
    import time
    from types import SimpleNamespace

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from mnemos.relay.usage_http import build_router
    from mnemos.soul._ratelimit_actor import RateLimitService

    service = RateLimitService.__ray_actor_class__()  # the ledger's own class, in this process
    hour = (time.time() // 3600) * 3600
    asyncio.run(service.report([{"at": hour, "principal": "early", "team": "", "model": "m", "prompt": 2,
                                 "completion": 3, "spend": 0.0}]))  # at the start of this hour

    async def admit(request: Any, verb: str) -> None:  # authentication off: the local admin
        return None

    app = FastAPI()
    app.include_router(build_router(admit, lambda: SimpleNamespace(usage=SimpleNamespace(remote=service.usage))))
    with TestClient(app) as http:
        body = http.get("/v1/usage", params={"window": "1s"}).json()
        assert body["total"]["requests"] == 1  # the hour's row is counted ...
        assert body["since"] <= hour and body["since"] % 3600 == 0, body  # ... and since says so
        assert http.get("/v1/usage", params={"window": "99999999999999d"}).json()["since"] == 0.0
