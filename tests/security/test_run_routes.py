"""Another principal's run over ``GET /v1/runs`` and ``GET /v1/runs/{id}/outputs/{output}``
(docs/guides/security.md, "Ownership"): a developer neither lists another's run (whatever the query
says) nor reads its outputs (404, as for no such run); a viewer lists it but reads no output (403);
its owner reads the bytes. An output name or run id that plays with paths is a 4xx JSON error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from security_support import Gateway

SECRET = "DEVELOPER-ONE-PRIVATE"
NO_RUN = "echo-text-20000101-000000-0000"  # the shape of a run id, of no run


def _run(gateway: Gateway, who: str, text: str) -> str:
    started = gateway.call("POST", "/v1/pipelines/echo-text/runs", who, json={"params": {"text": text}})
    assert started.status_code == 202, started.text
    return str(started.json()["id"])


def _wait(gateway: Gateway, who: str, run: str) -> None:
    status = gateway.finished_run(run, who)["status"]
    assert status == "succeeded", status


@pytest.fixture(scope="module")
def runs(gateway: Gateway) -> dict[str, str]:
    """A finished run of ``echo-text`` of each developer: ``{"developer": id, "developer-b": id}``."""
    made = {"developer": _run(gateway, "developer", SECRET), "developer-b": _run(gateway, "developer-b", "theirs")}
    for who, run in made.items():
        _wait(gateway, who, run)
    return made


def _listed(gateway: Gateway, path: str, who: str, **params: Any) -> list[dict[str, Any]]:
    answer = gateway.call("GET", path, who, params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def _output(gateway: Gateway, run: str, output: str, who: str) -> httpx.Response:
    return gateway.call("GET", f"/v1/runs/{run}/outputs/{output}", who)


def _error(answer: httpx.Response) -> dict[str, Any]:
    """The OpenAI-shaped error of a 4xx answer (never a 200 or a 500, never a page that is not JSON)."""
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"].startswith("application/json"), answer.headers["content-type"]
    error = answer.json()["error"]
    assert error["message"] and SECRET not in answer.text, answer.text[:300]
    return dict(error)


def test_another_developer_lists_none_of_the_run_whatever_the_query(gateway: Gateway, runs: dict[str, str]) -> None:
    mine, theirs = runs["developer"], runs["developer-b"]
    owner = "developer-user"
    queries: list[dict[str, Any]] = [{}, {"limit": 1000}, {"pipeline": "echo-text", "limit": 1000}]
    for query in queries:
        seen = _listed(gateway, "/v1/runs", "developer-b", **query)
        assert mine not in [r["id"] for r in seen], query
        assert {r["owner"] for r in seen} <= {"developer-b-user"}, query
        assert theirs in [r["id"] for r in seen], query  # its own run is listed
    # a parameter naming another principal is no filter the route takes: refused, never a way in
    for path in ("/v1/runs", "/v1/pipelines/echo-text/runs"):
        for query in ({"principal": owner}, {"owner": owner}, {"user": owner, "all": "true"}):
            refused = gateway.call("GET", path, "developer-b", params=query)
            assert refused.status_code == 422 and mine not in refused.text, (path, query, refused.text)
    in_pipeline = _listed(gateway, "/v1/pipelines/echo-text/runs", "developer-b")
    assert mine not in [r["id"] for r in in_pipeline] and theirs in [r["id"] for r in in_pipeline]
    assert mine in [r["id"] for r in _listed(gateway, "/v1/runs", "developer", limit=1000)]


def test_a_viewer_lists_the_runs_status_but_reads_none_of_its_outputs(gateway: Gateway, runs: dict[str, str]) -> None:
    run = runs["developer"]
    seen = {r["id"]: r for r in _listed(gateway, "/v1/runs", "viewer", limit=1000)}
    assert seen[run]["status"] == "succeeded" and seen[run]["owner"] == "developer-user"
    refused = _output(gateway, run, "out", "viewer")
    assert refused.status_code == 403 and _error(refused)["param"] == "role", refused.text


def test_another_developer_gets_404_on_the_outputs_as_for_no_such_run(gateway: Gateway, runs: dict[str, str]) -> None:
    run = runs["developer"]
    for output in ("out", "nope"):
        theirs, none = _output(gateway, run, output, "developer-b"), _output(gateway, NO_RUN, output, "developer-b")
        assert theirs.status_code == none.status_code == 404, theirs.text
        assert _error(theirs) == {k: v.replace(NO_RUN, run) if isinstance(v, str) else v
                                  for k, v in _error(none).items()}  # fmt: skip
        assert _error(theirs)["param"] == "run_id"
    owned = _output(gateway, run, "out", "developer")  # its owner reads the bytes
    assert owned.status_code == 200 and owned.content == SECRET.encode(), owned.text
    assert owned.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "output",
    ["..%2F..%2Fout", "%2e%2e%2f%2e%2e%2fout", "..%5C..%5Cout", "%2Fetc%2Fpasswd", "/etc/passwd", "out%2F..",
     "out%00", "runs/{other}/out", "runs%2F{other}%2Fout", "..%2F{other}%2Fout", "o" * 5000],
)  # fmt: skip
def test_an_output_name_that_plays_with_paths_is_a_4xx(gateway: Gateway, runs: dict[str, str], output: str) -> None:
    for who, own, other in (("developer", "developer", "developer-b"), ("developer-b", "developer-b", "developer")):
        answer = _output(gateway, runs[own], output.format(other=runs[other]), who)
        error = _error(answer)
        assert answer.status_code == 404 and error["param"] == "output", (who, answer.text[:300])


@pytest.mark.parametrize("run_id", ["a" * 256, "r" * 300, "x" * 5000, "%2e%2e", "..%2F..", "a%00b", "a%5Cb",
                                    ".hidden", "runs", "%E2%80%AE", "{mine}%2F..%2F{theirs}"])  # fmt: skip
def test_an_odd_or_over_long_run_id_is_a_4xx(gateway: Gateway, runs: dict[str, str], run_id: str) -> None:
    run_id = run_id.format(mine=runs["developer-b"], theirs=runs["developer"])
    for who in ("developer-b", "viewer"):
        for tail in ("", "/outputs/out"):
            answer = gateway.call("GET", f"/v1/runs/{run_id}{tail}", who)
            error = _error(answer)  # an id with a '/' (%2F) reaches no route: the plain 404 of a path unknown
            assert answer.status_code == 404 and error["param"] == (None if "%2F" in run_id else "run_id"), (
                who, tail, answer.text[:300])  # fmt: skip
