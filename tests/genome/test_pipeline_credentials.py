"""A Pipeline may not write a credential in clear: the registry, and every run's stored document,
would keep it so (a run seals the credentials passed to it, ``mnemos.synkron._state``).

- A step's own credential was stored as written: ``env: [{name: HF_TOKEN, value: hf_…}]``, a python
  step's ``params: {api_key: sk-…}``, a URL with ``user:password@`` or a presigned query in a step.
- A param's default that is a URL with credentials was stored as written (a credential-named param's
  default was refused already).
- A default of a param naming the file that holds a secret (``db_password_file: /run/secrets/db``)
  was refused as if it were the secret.
- The check named the keys (``mask_secrets``) again at every level of the params: quadratic.
- A scheme or an option around a param a run seals (``Authorization: "Bearer ${api_token}"``,
  ``--token=${hf_token}``), and a URL whose credentials are such params (``?access_token=${hf_token}``),
  were refused as credentials written in the pipeline.

Each write refuses it (``mnemos validate``/``apply``, the Python API, ``PUT /apis/…``: 422) naming
the field and the fix, never the value."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests_support import run_cli

from mnemos.engram import Engram
from mnemos.errors import ValidationError
from mnemos.genome import Registry, parse_resource
from mnemos.genome.pipeline import check_steps

SECRET = "s3cr3t-Zq7value"
KEPT = "the registry, and every run's stored document, would keep it in clear"


def pipeline(name: str, *steps: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"params": params or {}, "steps": list(steps)}}  # fmt: skip


def script(**fields: Any) -> dict[str, Any]:
    return {"name": "s", "script": 'echo "$V"', **fields}


def python(**params: Any) -> dict[str, Any]:
    return {"name": "p", "call": "m:f", "params": params}


# name → (document, the start of the message every write gives, its param)
REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "step-env": (
        pipeline("env", script(env=[{"name": "LANG", "value": "C"}, {"name": "HF_TOKEN", "value": f"hf_{SECRET}"}])),
        "pipeline/env: spec.steps[0] (s).env[1].value: HF_TOKEN is named like a credential and its value is "
        f"written in the pipeline: {KEPT}; give it from a secret (env: [{{name: HF_TOKEN, secretRef: {{name: S, "
        'key: K}}]) or from a param (value: "${hf_token}", with spec.params.hf_token: "" and -p hf_token=…',
        "spec.steps[0].env[1].value",
    ),
    "step-env-beside-a-reference": (  # more than a ${param}: the literal part is written in the pipeline
        pipeline("bearer", script(env=[{"name": "AUTHORIZATION", "value": f"Bearer {SECRET}${{tail}}"}]),
                 params={"tail": ""}),  # fmt: skip
        "pipeline/bearer: spec.steps[0] (s).env[0].value: AUTHORIZATION is named like a credential",
        "spec.steps[0].env[0].value",
    ),
    "step-param": (
        pipeline("par", python(api_key=f"sk-{SECRET}", limit=3)),
        f"pipeline/par: spec.steps[0] (p).params.api_key: a param named like a credential has a value written in "
        f'the pipeline: {KEPT}; pass it (api_key: "${{api_key}}", with spec.params.api_key: "" and -p api_key=…',
        "spec.steps[0].params.api_key",
    ),
    "step-param-nested-number": (
        pipeline("deep", python(db=[{"host": "db1", "db_password": 1234}])),
        "pipeline/deep: spec.steps[0] (p).params.db[0].db_password: a param named like a credential has a value",
        "spec.steps[0].params.db[0].db_password",
    ),
    "step-param-url": (
        pipeline("purl", python(source=f"https://user:{SECRET}@data.example/p.jsonl")),
        "pipeline/purl: spec.steps[0] (p).params.source: a URL with credentials (user:password@, or a query "
        "parameter such as a token or a presigned URL's signature) written in the pipeline: "
        f'{KEPT}; pass the URL as a param (source: '
        '"${src}"',
        "spec.steps[0].params.source",
    ),
    "step-env-url": (
        pipeline("eurl", script(env=[{"name": "SRC", "value": f"s3://bucket/x.jsonl?X-Amz-Signature={SECRET}"}])),
        "pipeline/eurl: spec.steps[0] (s).env[0].value: a URL with credentials",
        "spec.steps[0].env[0].value",
    ),
    "step-input-url": (
        pipeline("iurl", {"name": "gen", "modelRef": "tiny", "input": f"http://u:{SECRET}@data.example/p.jsonl"}),
        "pipeline/iurl: spec.steps[0] (gen).input: a URL with credentials",
        "spec.steps[0].input",
    ),
    "default-url": (
        pipeline("durl", script(), params={"limit": 3, "src": f"https://user:{SECRET}@data.example/p.jsonl"}),
        "pipeline/durl: spec.params.src: the default is a URL with credentials (user:password@, or a query "
        "parameter such as a token or a presigned URL's signature): "
        f'{KEPT}; leave it empty ("") and pass the URL at run time '
        "(-p src=…)",
        "spec.params.src",
    ),
    "default-presigned-url": (
        pipeline("dsig", script(), params={"srcs": ["a.jsonl", f"https://h.example/p?X-Amz-Signature={SECRET}"]}),
        "pipeline/dsig: spec.params.srcs[1]: the default is a URL with credentials",
        "spec.params.srcs[1]",
    ),
    "step-url-beside-a-plain-reference": (  # a run keeps ${tok} in clear: only params named like credentials
        pipeline("uref", python(source="https://data.example/p.jsonl?access_token=${tok}"), params={"tok": ""}),
        "pipeline/uref: spec.steps[0] (p).params.source: a URL with credentials (user:password@, or a query "
        f'parameter such as a token or a presigned URL\'s signature) written in the pipeline: {KEPT}; pass the URL '
        'as a param (source: "${src}", with spec.params.src: "" and -p src=… at run time)',
        "spec.steps[0].params.source",
    ),
    "step-env-framing-a-plain-reference": (
        pipeline("bref", script(env=[{"name": "AUTHORIZATION", "value": "Bearer ${tok}"}]), params={"tok": ""}),
        "pipeline/bref: spec.steps[0] (s).env[0].value: AUTHORIZATION is named like a credential",
        "spec.steps[0].env[0].value",
    ),
    # a run seals only the params named like credentials: ${tok}'s value, the token, was stored in clear
    "step-env-plain-reference": (
        pipeline("plain", script(env=[{"name": "HF_TOKEN", "value": "${tok}"}]), params={"tok": ""}),
        "pipeline/plain: spec.steps[0] (s).env[0].value: HF_TOKEN is named like a credential and takes ${tok}, a "
        "param whose value a run keeps in clear (its stored state, lineage and every backup would hold the "
        "credential): name the param like a credential (spec.params.hf_token, then ${hf_token}), which a run "
        "seals, or give HF_TOKEN from a secret (env: [{name: HF_TOKEN, secretRef: {name: S, key: K}}])",
        "spec.steps[0].env[0].value",
    ),
    "step-param-plain-reference": (
        pipeline("pplain", python(db={"host": "db1", "db_password": "${conn.pw}"}), params={"conn": {"pw": ""}}),
        "pipeline/pplain: spec.steps[0] (p).params.db.db_password: db_password is named like a credential and "
        "takes ${conn.pw}, a param whose value a run keeps in clear",
        "spec.steps[0].params.db.db_password",
    ),
    "default-file-named-but-no-path": (  # a *_file param may default to a path, not to the secret
        pipeline("dfile", script(), params={"db_password_file": SECRET}),
        "pipeline/dfile: spec.params.db_password_file: a param named like a credential has a default: "
        f'{KEPT}; leave it empty ("") and pass the value at run time (-p db_password_file=…), or give the step a '
        "secret (env: [{name: V, secretRef: {name: S, key: K}}]); a param naming the file that holds it (*_file, "
        "*_path) may default to its path (/run/secrets/db)",
        "spec.params.db_password_file",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_every_write_refuses_a_credential_written_in_clear(tmp_path: Path, case: str, capsys: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from mnemos.client import Client
    from mnemos.config import load_settings

    doc, message, param = REFUSED[case]
    client = Client(load_settings(engram={"uri": str(tmp_path / "engram")}))
    for write in (lambda: client.apply([doc]), lambda: Registry(client.engram).apply(parse_resource(doc))):
        with pytest.raises(ValidationError) as refused:
            write()
        assert refused.value.message.startswith(message), refused.value.message
        assert refused.value.param == param and SECRET not in refused.value.message
    assert client.engram.list("registry") == []  # nothing stored
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    for verb in ("validate", "apply"):
        out, err = run_cli(capsys, verb, "-f", str(tmp_path / "p.yaml"), code=2)
        assert err.startswith(f"error: {message}") and SECRET not in out + err, err


def test_put_refuses_it_with_422_naming_the_field(ray_cluster: None, control: Any) -> None:
    """(The session's Ray cluster first: the route applies through the ``genome`` actor, which would
    otherwise start a cluster from the test client's worker thread, whose end takes Ray's processes with it.)"""
    base = "/apis/synkron.mnemos.dev/v1/pipelines"
    for case, (doc, message, param) in sorted(REFUSED.items()):
        answer = control.put(f"{base}/{doc['metadata']['name']}", json=doc)
        assert answer.status_code == 422, (case, answer.text)
        error = answer.json()["error"]
        assert error["message"].startswith(message) and error["param"] == param, (case, error)
        assert SECRET not in answer.text
        assert control.get(f"{base}/{doc['metadata']['name']}").status_code == 404  # stored nowhere


ALLOWED = {
    "a secret": script(env=[{"name": "HF_TOKEN", "secretRef": {"name": "hf", "key": "token"}}]),
    "a run's param": script(env=[{"name": "HF_TOKEN", "value": "${hf_token}"},
                                 {"name": "DB_PASSWORD", "value": " ${db_password} "}]),  # fmt: skip
    "an empty value": script(env=[{"name": "HF_TOKEN", "value": ""}, {"name": "API_KEY"}]),
    # a step's output or a builtin is no param a run keeps: what it names is no credential of the caller's
    "a step's output or a builtin": script(env=[{"name": "API_KEY", "value": "${RUN_ID}"}]),
    "a file's path": script(env=[{"name": "DB_PASSWORD_FILE", "value": "/run/secrets/db"},
                                 {"name": "SECRET_PATH", "value": "${home}/.secrets/s.txt"}]),  # fmt: skip
    "python params": python(token="${hf_token}", db={"db_password": "${db_password}", "host": "db1"},
                            passwordFile="./secrets/db.txt", bos_token="<s>", max_token=3, use_api_key=True,
                            source="https://data.example/p.jsonl", url="${src}"),  # fmt: skip
    # what frames a param a run seals writes no credential (it was refused: "Bearer " was in clear)
    "a framed reference": script(env=[{"name": "AUTHORIZATION", "value": "Bearer ${api_token}"},
                                      {"name": "HF_TOKEN", "value": "--token=${hf_token}"},
                                      {"name": "DB_PASSWORD", "value": "-p ${db_password}"}]),  # fmt: skip
    "a framed reference in params": python(headers={"Authorization": "Bearer ${api_token}"}),
    # a URL's credentials given by params a run seals (they were refused as written in the pipeline)
    "a URL's credentials by reference": python(source="https://data.example/p.jsonl?access_token=${hf_token}",
                                               db="postgres://${db_user}:${db_password}@db1/app",
                                               signed="https://b.example/x?X-Amz-Signature=${aws_secret}"),  # fmt: skip
    # a query that carries no credential (a revision, a download flag) and a fragment are plain URLs
    "plain queries": python(source="https://data.example/p.jsonl?download=true&revision=main",
                            page="https://data.example/docs#usage"),  # fmt: skip
}
ALLOWED_DEFAULTS = {"hf_token": "", "db_password": None, "api_token": "", "db_user": "app", "aws_secret": "",
                    "src": "https://data.example/p.jsonl?download=1",
                    "home": "/home/u",
                    "db_password_file": "/run/secrets/db", "db": {"admin_password_path": "~/.pgpass"},
                    "bos_token": "<s>", "limit": 3}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_a_reference_a_secret_an_empty_value_or_a_files_path_is_no_credential(tmp_path: Path, case: str) -> None:
    """A step passes a credential the allowed ways (a ``secretRef``, a ``${param}`` given at run time),
    and a param naming the file that holds a secret defaults to its path (``db_password_file`` holds
    ``password``: lineage masks it, and a run seals it, but it was refused as if it were the secret)."""
    registry = Registry(Engram(str(tmp_path / "engram")))
    doc = pipeline("fine", ALLOWED[case], params=ALLOWED_DEFAULTS)
    assert registry.apply(parse_resource(doc)).action == "created"
    assert registry.get("Pipeline", "fine").spec.params["db_password_file"] == "/run/secrets/db"


def test_the_check_names_the_keys_in_one_pass() -> None:
    """It named the keys (``mask_secrets``) again at each level of the params: a few hundred levels of a
    few hundred params took seconds on every write and run."""
    from mnemos.trace.lineage import mask_secrets

    params: dict[str, Any] = {"db_password": ""}
    for _ in range(300):
        params = {"next": params, **{f"k{i}": "v" for i in range(300)}}
    doc = parse_resource(pipeline("wide", script(), params=params))

    def fastest(work: Any) -> float:  # the least of three: what the machine's load adds is left out
        times = []
        for _ in range(3):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return min(times)

    one_pass = fastest(lambda: mask_secrets(params))
    check = fastest(lambda: check_steps(doc))
    assert check < 25 * one_pass, (check, one_pass)  # quadratic: ~150 passes (300 levels / 2)
