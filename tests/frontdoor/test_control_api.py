"""The control-plane API on the real gateway (auth on): verbs, 409 preconditions, errors, audit, OpenAPI."""

from __future__ import annotations

import json
from typing import Any

import httpx
import yaml
from tests_support import model_doc

MODELS = "/apis/genome.mnemos.dev/v1/models"
POLICIES = "/apis/genome.mnemos.dev/v1/policies"


def _call(fd: Any, method: str, path: str, who: str | None, **kw: Any) -> httpx.Response:
    headers = ({"Authorization": f"Bearer {fd.keys[who]}"} if who else {}) | kw.pop("headers", {})
    return httpx.request(method, fd.url + path, headers=headers, timeout=60, **kw)


_ERROR_FIELDS = {"message", "type", "param", "code"}


def _error(resp: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == _ERROR_FIELDS and error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error  # type: ignore[no-any-return]


def _policy(name: str, rps: int) -> dict[str, Any]:
    return {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": name},
            "spec": {"rateLimit": {"principals": [f"nobody-{name}"], "requestsPerSecond": rps,
                                   "burst": rps}}}  # fmt: skip


def test_resource_lifecycle_with_generations_and_409(frontdoor: Any) -> None:
    created = _call(frontdoor, "POST", MODELS, "operator", json=model_doc("cp-model"))
    assert created.status_code == 200, created.text
    assert created.json()["action"] == "created" and created.json()["resource"]["metadata"]["generation"] == 1
    again = _call(frontdoor, "POST", MODELS, "operator", json=model_doc("cp-model"))
    assert again.json()["action"] == "unchanged"
    # PUT with the generation read in the body: applies; the same stale body again: 409 naming the generation
    doc = _call(frontdoor, "GET", f"{MODELS}/cp-model", "viewer").json()
    doc["spec"]["version"] = "2"
    put = _call(frontdoor, "PUT", f"{MODELS}/cp-model", "operator", json=doc)
    assert put.status_code == 200 and put.json()["resource"]["metadata"]["generation"] == 2, put.text
    doc["spec"]["version"] = "3"
    err = _error(_call(frontdoor, "PUT", f"{MODELS}/cp-model", "operator", json=doc), 409, "metadata.generation")
    assert "generation 2" in err["message"] and err["code"] == "conflict"
    _error(_call(frontdoor, "POST", MODELS, "operator", json=model_doc("cp-model", version="9"),
                 params={"generation": 1}), 409)  # fmt: skip
    history = _call(frontdoor, "GET", f"{MODELS}/cp-model/history", "viewer").json()["data"]
    assert [d["metadata"]["generation"] for d in history] == [1, 2]
    first = _call(frontdoor, "GET", f"{MODELS}/cp-model", "viewer", params={"generation": 1}).json()
    assert first["spec"]["version"] == "1"
    assert "cp-model" in [d["metadata"]["name"] for d in _call(frontdoor, "GET", MODELS, "viewer").json()["data"]]
    _error(_call(frontdoor, "DELETE", f"{MODELS}/cp-model", "operator", params={"generation": 1}), 409)
    gone = _call(frontdoor, "DELETE", f"{MODELS}/cp-model", "operator", params={"generation": 2})
    assert gone.status_code == 200 and gone.json()["resource"]["metadata"]["generation"] == 2
    _error(_call(frontdoor, "GET", f"{MODELS}/cp-model", "viewer"), 404, "name")
    # every change is an audit event naming the principal
    from mnemos.trace.lineage import events

    audits = [e for e in events(frontdoor.client.engram) if e.get("type") == "audit"
              and str(e.get("attrs", e).get("action", "")).startswith("resource.")]  # fmt: skip
    flat = [e.get("attrs", e) for e in audits]
    assert {(a["action"], a["generation"]) for a in flat if a.get("name") == "cp-model"} >= {
        ("resource.applied", 1),
        ("resource.applied", 2),
        ("resource.deleted", 2),
    }
    assert all(a["actor"] == "apikey:operator-user" for a in flat if a.get("name") == "cp-model")


def test_etag_and_if_match_are_preconditions_as_http_has_them(frontdoor: Any) -> None:
    """GET answers the generation as ETag; PUT and DELETE take If-Match (quoted, bare, a list, *):
    a resource that moved on is 412, where ``?generation=`` stays 409."""
    path = f"{MODELS}/etag-model"
    created = _call(frontdoor, "POST", MODELS, "operator", json=model_doc("etag-model"))
    assert created.status_code == 200 and created.headers["etag"] == '"1"', created.text
    read = _call(frontdoor, "GET", path, "viewer")
    assert read.headers["etag"] == '"1"'
    doc = read.json()
    doc["metadata"].pop("generation")

    def put(version: str, if_match: str | None, **kw: Any) -> httpx.Response:
        doc["spec"]["version"] = version
        headers = {"Authorization": f"Bearer {frontdoor.keys['operator']}"}
        if if_match is not None:
            headers["If-Match"] = if_match
        return httpx.put(frontdoor.url + path, json=doc, headers=headers, timeout=60, **kw)

    moved = put("2", '"1"')
    assert moved.status_code == 200 and moved.headers["etag"] == '"2"', moved.text
    stale = _error(put("3", '"1"'), 412, "If-Match")
    assert stale["code"] == "precondition_failed" and "generation 2" in stale["message"]
    assert put("3", "2").json()["resource"]["metadata"]["generation"] == 3  # bare
    assert put("4", '"1", "3"').json()["resource"]["metadata"]["generation"] == 4  # a list
    assert put("5", "*").json()["resource"]["metadata"]["generation"] == 5
    _error(put("6", 'W/"5"'), 412, "If-Match")  # a weak tag never matches
    _error(put("6", "five"), 422, "If-Match")
    _error(put("6", '"5"', params={"generation": 4}), 422, "If-Match")  # two preconditions that disagree
    _error(put("6", None, params={"generation": 4}), 409)  # the query's stays 409
    assert _call(frontdoor, "GET", path, "viewer", params={"generation": 2}).headers["etag"] == '"2"'
    absent = httpx.put(frontdoor.url + f"{MODELS}/etag-absent", json={**doc, "metadata": {"name": "etag-absent"}},
                       headers={"Authorization": f"Bearer {frontdoor.keys['operator']}", "If-Match": "*"})  # fmt: skip
    _error(absent, 412, "If-Match")
    operator = {"Authorization": f"Bearer {frontdoor.keys['operator']}"}
    _error(httpx.delete(frontdoor.url + path, headers={**operator, "If-Match": '"4"'}), 412, "If-Match")
    gone = httpx.delete(frontdoor.url + path, headers={**operator, "If-Match": '"5"'})
    assert gone.status_code == 200 and gone.json()["resource"]["metadata"]["generation"] == 5, gone.text


def test_if_match_on_the_collection_is_a_precondition_too(frontdoor: Any) -> None:
    """``kubectl``-style clients apply by POSTing to the collection: an If-Match there guards the
    resource the body names, as on PUT (it was ignored, so a stale writer silently won)."""
    operator = {"Authorization": f"Bearer {frontdoor.keys['operator']}"}

    def post(version: str, if_match: str) -> httpx.Response:
        doc = model_doc("post-etag", version=version)
        return httpx.post(frontdoor.url + MODELS, json=doc, headers={**operator, "If-Match": if_match}, timeout=60)

    _error(post("1", "*"), 412, "If-Match")  # `*`: it must exist, and it does not yet
    assert _call(frontdoor, "POST", MODELS, "operator", json=model_doc("post-etag")).headers["etag"] == '"1"'
    moved = post("2", '"1"')
    assert moved.status_code == 200 and moved.headers["etag"] == '"2"', moved.text
    stale = _error(post("3", '"1"'), 412, "If-Match")
    assert "generation 2" in stale["message"]
    _error(post("3", "two"), 422, "If-Match")
    assert _call(frontdoor, "GET", f"{MODELS}/post-etag", "viewer").json()["spec"]["version"] == "2"
    assert post("3", "*").json()["resource"]["metadata"]["generation"] == 3


def test_verbs_are_enforced_before_the_body(frontdoor: Any) -> None:
    _error(_call(frontdoor, "POST", MODELS, None, content=b"{not json"), 401)
    _error(_call(frontdoor, "POST", MODELS, "viewer", content=b"{not json"), 403)
    _error(_call(frontdoor, "POST", MODELS, "developer", json=model_doc("nope")), 403)
    _error(_call(frontdoor, "DELETE", f"{MODELS}/nope", "viewer"), 403)
    _error(_call(frontdoor, "GET", "/v1/secrets", "developer"), 403)
    # A space search runs the space's embedding model: `infer`, which viewers do not hold.
    _error(_call(frontdoor, "POST", "/v1/spaces/nothing/search", "viewer", json={"query": "q"}), 403)
    _error(_call(frontdoor, "POST", "/v1/spaces/nothing/search", "developer", json={"query": "q"}), 404)
    _error(_call(frontdoor, "GET", MODELS, None), 401)
    assert _call(frontdoor, "GET", MODELS, "developer").status_code == 200


def test_bad_input_is_4xx_naming_the_field(frontdoor: Any) -> None:
    as_json = {"content-type": "application/json"}
    _error(_call(frontdoor, "POST", MODELS, "operator", content=b"{not json", headers=as_json), 400)
    # A JSON body declared as something else (a browser's form: text/plain; curl -d; none) is a 415.
    doc = json.dumps(model_doc("declared")).encode()
    for declared in ("text/plain", "application/x-www-form-urlencoded", None):
        for path, who in ((MODELS, "operator"), ("/v1/tokens", "admin"), ("/v1/jobs", "admin")):
            headers = {"content-type": declared} if declared else {}
            sent = _call(frontdoor, "POST", path, who, content=doc, headers=headers)
            assert "Content-Type: application/json" in _error(sent, 415, "content-type")["message"], path
    _error(_call(frontdoor, "POST", MODELS, "operator", json=[1]), 400, "body")
    bad = model_doc("typo")
    bad["spec"]["runtime"]["engin"] = "x"
    assert "engin" in _error(_call(frontdoor, "POST", MODELS, "operator", json=bad), 422)["message"]
    _error(_call(frontdoor, "POST", MODELS, "operator", json=_policy("p", 1)), 422, "kind")
    _error(_call(frontdoor, "PUT", f"{MODELS}/other", "operator", json=model_doc("named")), 422, "metadata.name")
    _error(_call(frontdoor, "GET", f"{MODELS}/Bad_Name", "viewer"), 422, "name")
    _error(_call(frontdoor, "GET", MODELS.replace("models", "gizmos"), "viewer"), 404, "plural")
    _error(_call(frontdoor, "POST", MODELS, "operator", json=model_doc("g"), params={"generation": -1}), 422,
           "generation")  # fmt: skip


def test_a_body_nested_thousands_deep_is_a_400_on_every_route_that_takes_one(frontdoor: Any) -> None:
    """Python's JSON parser recurses: a body of ``{"a":{"a":…`` thousands deep once took five routes
    to a 500 (RecursionError). Every POST and PUT route the gateway publishes must refuse it as bad
    input, closed or not, sent by a caller whose verbs let the body be read (the admin)."""
    import re

    paths = _call(frontdoor, "GET", "/openapi.json", "admin").json()["paths"]
    routes = [(method.upper(), re.sub(r"\{[^}]+\}", "x", path)) for path, ops in paths.items()
              for method in ops if method in ("post", "put")]  # fmt: skip
    assert len(routes) >= 12 and ("POST", "/v1/jobs") in routes and ("PUT", "/v1/secrets/x/x") in routes
    depth = 5000
    bodies = {"closed": b'{"a":' * depth + b"1" + b"}" * depth, "open": b'{"a":' * depth}
    headers = {"Authorization": f"Bearer {frontdoor.keys['admin']}", "content-type": "application/json"}
    wrong = []
    for method, path in routes:
        for shape, body in bodies.items():
            resp = httpx.request(method, frontdoor.url + path, content=body, headers=headers, timeout=60)
            if not 400 <= resp.status_code < 500 or set(resp.json().get("error") or ()) != _ERROR_FIELDS:
                wrong.append((method, path, shape, resp.status_code, resp.text[:200]))
    assert not wrong, wrong


def test_nan_and_infinity_are_refused_in_bodies_and_yaml(frontdoor: Any) -> None:
    """Python's parsers take ``NaN``, ``Infinity``, ``1e999`` (JSON) and ``.inf`` (YAML), and raise on
    an integer of thousands of digits. A key once
    minted with ``budget: {amount: Infinity}`` was stored, and every later ``GET /v1/tokens`` was a
    500 (no JSON answer can carry infinity). Each is refused with the field or the cause named."""
    from mnemos.errors import ValidationError
    from mnemos.genome.kinds import parse_documents

    headers = {"Authorization": f"Bearer {frontdoor.keys['admin']}", "content-type": "application/json"}

    def post(path: str, body: dict[str, Any], literal: str) -> httpx.Response:  # "@" in body: the literal
        raw = json.dumps(body).replace('"@"', literal)
        return httpx.post(frontdoor.url + path, content=raw, headers=headers, timeout=60)

    for literal in ("Infinity", "-Infinity", "NaN", "1e999"):
        key = {"name": "inf-key", "role": "developer", "apiKey": True, "limits": {"budget": {"amount": "@"}}}
        assert f"{literal} is not a finite number" in _error(post("/v1/tokens", key, literal), 400)["message"]
        _error(post("/v1/jobs", {"function": "mnemos.cortex.testing:echo", "args": ["@"]}, literal), 400)
    too_long = post("/v1/jobs", {"function": "mnemos.cortex.testing:echo", "args": ["@"]}, "9" * 5000)
    assert "an integer of 5000 digits is too long" in _error(too_long, 400)["message"]  # was a 500 (int())
    chat = post("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                         "temperature": "@"}, "NaN")  # fmt: skip
    assert "finite number" in _error(chat, 422, "temperature")["message"]
    assert _call(frontdoor, "GET", "/v1/tokens", "admin").status_code == 200
    doc = yaml.safe_dump(model_doc("priced", pricing={"input": 1.0})).replace("input: 1.0", "input: .inf")
    try:
        parse_documents(doc, "model.yaml")
        raise AssertionError("a price of .inf was accepted")
    except ValidationError as exc:
        assert "spec.pricing.input" in str(exc) and "finite number" in str(exc), exc


def test_strings_that_are_not_unicode_are_refused_in_bodies_and_served_escaped(frontdoor: Any) -> None:
    """A lone surrogate (``\\ud800``) is no text: in a body it is a 400, on every route's parser and
    in every spelling (an escape, or bytes Python decodes with "surrogatepass"). A job's own data
    can still hold one (a Python client, a file name that is not UTF-8): answers and events carry it
    as a ``\\udcff`` escape, where it once made ``GET /v1/jobs`` a 500 for every admin."""
    import os

    import ray

    from mnemos.trace import events

    headers = {"Authorization": f"Bearer {frontdoor.keys['admin']}", "content-type": "application/json"}
    for raw in (b'{"function": "mnemos.cortex.testing:echo", "args": ["\\ud800x"]}',
                b'{"function": "mnemos.cortex.testing:echo", "labels": {"\\udcff": "x"}}',
                b'{"function": "mnemos.cortex.testing:echo", "args": ["\xed\xa0\x80"]}'):  # fmt: skip
        refused = httpx.post(frontdoor.url + "/v1/jobs", content=raw, headers=headers, timeout=60)
        assert "unpaired surrogate" in _error(refused, 400)["message"]
    name = os.fsdecode(b"report-\xff.csv")
    after = ray.get(events.bus().last.remote())
    job = frontdoor.client.jobs.submit("mnemos.cortex.testing:echo", name, labels={"file": name})
    job.result(timeout=120)
    failed = frontdoor.client.jobs.submit("mnemos.cortex.testing:fail", name, max_attempts=1)
    assert failed.wait(timeout=120)["status"] == "failed"
    one = _call(frontdoor, "GET", f"/v1/jobs/{job.id}", "admin")
    assert one.status_code == 200 and one.json()["labels"] == {"file": name}, one.text
    listed = _call(frontdoor, "GET", "/v1/jobs", "admin")
    assert listed.status_code == 200 and job.id in {j["id"] for j in listed.json()["data"]}
    query = {"types": "job", "subject": f"job:{failed.id}", "last_event_id": after}
    with httpx.stream("GET", frontdoor.url + "/v1/events", headers=headers, params=query, timeout=60) as stream:
        for event in events.parse_sse(stream.iter_lines()):
            if event.get("type") == "job.failed":
                break
    assert name in event["data"]["error"], event


def test_validate_diff_schema_status_whoami(frontdoor: Any) -> None:
    ok = _call(frontdoor, "POST", f"{POLICIES}:validate", "viewer", json=_policy("checked", 5))
    assert ok.status_code == 200 and ok.json()["valid"] is True
    assert _call(frontdoor, "GET", f"{POLICIES}/checked", "viewer").status_code == 404  # nothing stored
    diff = _call(frontdoor, "POST", f"{POLICIES}:diff", "viewer", json=_policy("checked", 5)).json()
    assert diff["action"] == "create" and "requestsPerSecond" in diff["diff"]
    schema = _call(frontdoor, "GET", "/apis/genome.mnemos.dev/v1/schemas/Model", "viewer").json()
    assert "spec" in schema["properties"]
    status = _call(frontdoor, "GET", "/v1/status", "viewer").json()
    assert status["resources"].get("Pipeline", 0) >= 1
    # nodes for everyone; their internal addresses only for operators and admins
    assert status["nodes"] and all("address" not in n and n["state"] == "alive" for n in status["nodes"])
    assert all(n["address"] for n in _call(frontdoor, "GET", "/v1/status", "operator").json()["nodes"])
    assert _call(frontdoor, "GET", "/v1/whoami", "developer").json()["role"] == "developer"


def test_secrets_are_write_only(frontdoor: Any) -> None:
    put = _call(frontdoor, "PUT", "/v1/secrets/fd-keys/TOKEN", "operator", json={"value": "s3cr3t-value"})
    assert put.status_code == 200 and "s3cr3t" not in put.text
    assert _call(frontdoor, "GET", "/v1/secrets/fd-keys", "operator").json()["keys"] == ["TOKEN"]
    listed = _call(frontdoor, "GET", "/v1/secrets", "admin")
    assert {"name": "fd-keys"} in listed.json()["data"] and "s3cr3t" not in listed.text
    _error(_call(frontdoor, "PUT", "/v1/secrets/fd-keys/TOKEN", "operator", json={"value": ""}), 422, "value")
    assert _call(frontdoor, "DELETE", "/v1/secrets/fd-keys", "operator").status_code == 200
    _error(_call(frontdoor, "GET", "/v1/secrets/fd-keys/TOKEN", "operator"), 405)


def test_openapi_documents_statuses_and_verbs(frontdoor: Any) -> None:
    spec = _call(frontdoor, "GET", "/openapi.json", "viewer").json()
    put = spec["paths"]["/apis/{group}/{version}/{plural}/{name}"]["put"]
    assert {"401", "403", "409", "422"} <= set(put["responses"]) and put["x-mnemos-verb"] == "apply"
    params = {p["name"]: p for p in put["parameters"]}
    assert params["name"]["schema"]["pattern"] and params["generation"]["schema"]["anyOf"][0]["minimum"] == 0
    assert spec["paths"]["/v1/lineage/{node_id}"]["get"]["x-mnemos-verb"] == "read-lineage"


def test_a_run_started_with_a_key_carries_that_keys_limits_to_its_model_steps(frontdoor: Any) -> None:
    """The run keeps who started it and the key's limits (its model steps spend them: see
    tests/synkron/test_step_metering.py), never a bare subject that would escape the key's budget."""
    body = {"name": "run-bot", "role": "developer", "apiKey": True, "team": "blue",
            "limits": {"tpm": 5000, "budget": {"tokens": 900, "window": "1h"}}}  # fmt: skip
    minted = _call(frontdoor, "POST", "/v1/tokens", "admin", json=body)
    assert minted.status_code == 201, minted.text
    headers = {"Authorization": f"Bearer {minted.json()['apiKey']}"}
    started = httpx.post(frontdoor.url + "/v1/pipelines/greet/runs", headers=headers, json={}, timeout=60)
    assert started.status_code == 202, started.text
    run = frontdoor.client.pipelines.get(started.json()["id"])
    meter = run.state()["meter"]
    assert {k: meter[k] for k in ("subject", "team", "limits_key")} == {
        "subject": "run-bot", "team": "blue", "limits_key": minted.json()["id"]}  # fmt: skip
    assert meter["limits"]["tpm"] == 5000 and meter["limits"]["budget"]["tokens"] == 900
    done = run.wait(240, progress=False)
    assert done["status"] == "succeeded"
    # its step jobs are the key holder's too (they were the SYNKRON service's: 404 to the run's owner)
    job_ids = [job for step in done["steps"].values() for job in step["job_ids"]]
    assert job_ids
    for job_id in job_ids:
        job = httpx.get(f"{frontdoor.url}/v1/jobs/{job_id}", headers=headers, timeout=60)
        assert job.status_code == 200 and job.json()["owner"] == "run-bot", job.text


def test_a_pipeline_that_runs_models_needs_infer_as_well_as_submit(frontdoor: Any) -> None:
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "infer-scoped"},
           "spec": {"steps": [{"name": "gen", "runtime": "neuron-llm", "modelRef": "no-such-model",
                               "input": "runs/x/prompts", "outputs": [{"name": "results"}]}]}}  # fmt: skip
    frontdoor.client.apply([doc])
    body = {"name": "submit-only", "role": "developer", "scopes": ["submit"], "ttl": "10m"}
    minted = _call(frontdoor, "POST", "/v1/tokens", "admin", json=body)
    assert minted.status_code == 201, minted.text
    submit_only = {"Authorization": f"Bearer {minted.json()['token']}"}
    path = frontdoor.url + "/v1/pipelines/infer-scoped/runs"
    refused = _error(httpx.post(path, headers=submit_only, json={}, timeout=60), 403)
    assert "infer" in refused["message"], refused
    greet = httpx.post(frontdoor.url + "/v1/pipelines/greet/runs", headers=submit_only, json={}, timeout=60)
    assert greet.status_code == 202, greet.text  # a pipeline without model steps: submit is enough
    # the positive control: a developer holds infer, so the check passes and the run is prepared (the
    # model is not registered: 404 naming it)
    _error(_call(frontdoor, "POST", "/v1/pipelines/infer-scoped/runs", "developer", json={}), 404,
           "spec.steps[0].modelRef")
    assert frontdoor.client.pipelines.get(greet.json()["id"]).wait(240)["status"] == "succeeded"
    # resuming: the same rule (a failed run of the model pipeline, as the store would hold it)
    from mnemos.synkron._state import state_key

    rid = "infer-scoped-20261202-000000-beef"
    frontdoor.client.engram.write_json(state_key(rid), {
        "id": rid, "principal": "submit-only", "status": "failed", "pipeline": {"name": "infer-scoped"},
        "steps": {"gen": {"type": "infer", "status": "failed"}}})  # fmt: skip
    refused = _error(httpx.post(f"{frontdoor.url}/v1/runs/{rid}/resume", headers=submit_only, timeout=60), 403)
    assert "infer" in refused["message"], refused
    done = httpx.post(f"{frontdoor.url}/v1/runs/{greet.json()['id']}/resume", headers=submit_only, timeout=60)
    assert done.status_code == 409 and "nothing to resume" in done.text  # no model steps: the verb check passes
