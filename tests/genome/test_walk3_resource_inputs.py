"""What the resource API and ``mnemos diff`` took that they should not, or refused that they should take.

- An Adapter's ``spec.baseUrl`` was any string: ``https://user:sk-…@api.example.com/v1`` or
  ``…/v1?api_key=sk-…`` was stored and shown as written to every reader (a viewer's ``GET
  /apis/genome.mnemos.dev/v1/adapters/x``, ``mnemos get adapter -o yaml``, ``history``), though the
  credential belongs in a Secret (``auth.secretRef``); a query, a fragment, a URL that is no
  http(s) URL (``x``) or has no host was taken too, and failed only when a request was relayed
  (the request's path is appended to ``baseUrl``). Each is now refused naming ``spec.baseUrl``,
  and the refusal does not repeat the credential.
- ``mnemos diff -f -`` answered ``error: -: no such file or directory`` (exit 3), though ``apply``
  and ``validate`` read standard input from ``-f -``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mnemos.errors import ValidationError
from mnemos.genome import parse_resource

ADAPTER = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "up"},
           "spec": {"baseUrl": "https://api.example.com/v1", "models": ["m"]}}  # fmt: skip


def _adapter(base_url: str) -> dict:
    return {**ADAPTER, "spec": {**ADAPTER["spec"], "baseUrl": base_url}}


@pytest.mark.parametrize(("base_url", "says"), [
    ("https://user:sk-SECRET1@api.example.com/v1", "must not carry credentials"),
    ("https://sk-SECRET1@api.example.com/v1", "must not carry credentials"),
    ("https://api.example.com/v1?api_key=sk-SECRET1", "must not have a query or fragment"),
    ("https://api.example.com/v1#sk-SECRET1", "must not have a query or fragment"),
    ("https://api.example.com/v1?", "must not have a query or fragment"),
    ("api.example.com/v1", "must be an http:// or https:// URL with a host"),
    ("ftp://api.example.com/v1", "must be an http:// or https:// URL with a host"),
    ("http:///v1", "must be an http:// or https:// URL with a host"),
    ("", "must be an http:// or https:// URL with a host"),
    ("http://api.example.com:port/v1", "is not a URL"),
    ("http://[::1/v1", "is not a URL"),
])  # fmt: skip
def test_an_adapter_base_url_that_is_no_plain_http_url_is_refused(base_url: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says) as refused:
        parse_resource(_adapter(base_url))
    assert refused.value.param == "spec.baseUrl"
    assert "SECRET1" not in str(refused.value)


@pytest.mark.parametrize("base_url", ["https://api.example.com/v1", "http://127.0.0.1:9/v1", "http://[::1]:8000",
                                      "http://vllm.default.svc.cluster.local:8000/v1/"])  # fmt: skip
def test_an_adapter_base_url_that_is_a_plain_http_url_is_taken(base_url: str) -> None:
    assert parse_resource(_adapter(base_url)).spec.base_url == base_url


def test_a_grpc_adapter_takes_host_and_port_as_the_seed_names_it() -> None:
    """The seed's Helm values name a vLLM Service as ``baseUrl: vllm.default.svc.cluster.local:8000``
    (``type: grpc``): taken; credentials and queries are refused there too."""
    grpc = {**ADAPTER, "spec": {**ADAPTER["spec"], "type": "grpc"}}
    for taken in ("vllm.default.svc.cluster.local:8000", "grpc://vllm:8000", "grpcs://vllm.example.com:443"):
        assert parse_resource({**grpc, "spec": {**grpc["spec"], "baseUrl": taken}}).spec.base_url == taken
    for refused, says in (("user:sk-SECRET1@vllm:8000", "must not carry credentials"),
                          ("vllm:8000?key=sk-SECRET1", "must not have a query"), ("ftp://vllm:8000", "host:port")):
        with pytest.raises(ValidationError, match=says) as error:
            parse_resource({**grpc, "spec": {**grpc["spec"], "baseUrl": refused}})
        assert error.value.param == "spec.baseUrl" and "SECRET1" not in str(error.value)


def mnemos(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MNEMOS_URL", "MNEMOS_API_KEY")}
    proc = subprocess.run([sys.executable, "-m", "mnemos", *args], cwd=home, env={**env, "MNEMOS_HOME": str(home)},
                          capture_output=True, input=stdin, timeout=180)  # fmt: skip
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_diff_reads_standard_input_as_apply_does(tmp_path: Path) -> None:
    doc = b"apiVersion: genome.mnemos.dev/v1\nkind: Adapter\nmetadata: {name: up}\nspec: {baseUrl: 'http://h/v1'}\n"
    diffed = mnemos(tmp_path, "diff", "-f", "-", stdin=doc)
    assert diffed.returncode == 0, diffed.stderr
    assert "adapter/up create" in diffed.stdout and "+  baseUrl: http://h/v1" in diffed.stdout
    twice = mnemos(tmp_path, "diff", "-f", "-", stdin=doc + b"---\n" + doc)
    assert twice.returncode != 0 and "Traceback" not in twice.stderr
    assert twice.stderr.strip() == "error: Adapter/up is declared twice: in stdin (document 1) and stdin (document 2)"


@pytest.mark.parametrize("field", ["kind", "apiVersion"])
def test_a_huge_kind_or_api_version_is_not_echoed_whole(field: str) -> None:
    """A megabyte ``kind`` or ``apiVersion`` came back whole in the 422 (and the gateway's log line):
    the error now shows its first 100 characters, as it does a name's."""
    from mnemos.relay.control import _parse

    doc = {**_adapter("http://h/v1"), field: "x" * 1_000_000}
    with pytest.raises(ValidationError) as refused:
        parse_resource(doc)
    assert len(str(refused.value)) < 400 and refused.value.param == field
    with pytest.raises(ValidationError) as refused:
        _parse({k: v for k, v in doc.items() if k != "kind"} if field == "apiVersion" else doc, "Adapter")
    assert len(str(refused.value)) < 400 and refused.value.param == field


def test_huge_or_countless_unknown_fields_are_not_echoed_whole() -> None:
    """One unknown 1 MB key came back twice (message and ``param``: a 2 MB 422); ten thousand
    unknown keys made a message of ten thousand lines. Names are cut, and twenty errors said."""
    huge = {**_adapter("http://h/v1")}
    huge["spec"] = {**huge["spec"], "k" * 1_000_000: 1}
    with pytest.raises(ValidationError) as refused:
        parse_resource(huge)
    assert len(str(refused.value)) < 400 and len(refused.value.param or "") < 200, refused.value.param
    assert refused.value.param.startswith("spec.kkkk") and refused.value.param.endswith("…")
    many = {**_adapter("http://h/v1")}
    many["spec"] = {**many["spec"], **{f"extra{i}": i for i in range(10_000)}}
    with pytest.raises(ValidationError) as refused:
        parse_resource(many)
    assert str(refused.value).endswith("and 9980 more") and len(str(refused.value)) < 2_000, str(refused.value)[:300]


MODEL = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": "m"},
         "spec": {"family": "llama", "version": "1", "artifact": {"uri": "s3://bucket/m"},
                  "runtime": {"engine": "vllm"}}}  # fmt: skip


@pytest.mark.parametrize(("field", "uri"), [
    ("artifact", "s3://AKIAEXAMPLE:SECRET1@bucket/m"),
    ("artifact", "hf://user:SECRET1@org/model"),
    ("artifact", "https://user:SECRET1@host/model"),
    ("tokenizer", "s3://AKIAEXAMPLE:SECRET1@bucket/tok"),
])  # fmt: skip
def test_a_model_uri_with_credentials_is_refused_without_repeating_them(local_engram, field: str, uri: str) -> None:
    """``s3://KEY:SECRET@bucket/…`` was stored and shown to every reader (viewers' ``GET``, ``mnemos
    get model -o yaml``); now every write refuses it, naming the field and not the secret."""
    from mnemos.genome import Registry

    spec = {**MODEL["spec"], field: {"uri": uri}}
    with pytest.raises(ValidationError, match="must not carry credentials") as refused:
        Registry(local_engram).apply(parse_resource({**MODEL, "spec": spec}))
    assert refused.value.param == f"spec.{field}.uri" and "SECRET1" not in str(refused.value)
    assert Registry(local_engram).list("Model") == []


def test_an_at_sign_that_names_a_revision_is_no_credential(local_engram) -> None:
    from mnemos.genome import Registry

    for uri in ("hf://gpt2@main", "hf://org/model@v1.0", "s3://bucket/a@b/m"):
        model = parse_resource({**MODEL, "spec": {**MODEL["spec"], "artifact": {"uri": uri}}})
        assert Registry(local_engram).apply(model).action in ("created", "configured"), uri


@pytest.mark.parametrize(("path", "param", "says"), [
    ("/apis/genome.mnemos.dev/v1/adapters/UPPER", "name", "'UPPER' is not a valid name: at most 253 lowercase"),
    ("/apis/Genome!/v1/adapters", "group", "'Genome!' is not an API group, such as genome.mnemos.dev"),
    ("/apis/genome.mnemos.dev/one/adapters", "version", "'one' is not an API version, such as v1"),
    ("/apis/genome.mnemos.dev/v1/Adapters", "plural", "'Adapters' is not a kind's plural in lower case"),
    # a secret's name or key is not quoted back: a value pasted there (PUT /v1/secrets/llm/sk%20VALUE) was echoed
    ("/v1/secrets/-x", "name", "the value is not a secret name or key"),
    ("DELETE /v1/secrets/llm/sk%20SECRETVAL%2B", "key", "the value is not a secret name or key"),
])  # fmt: skip
def test_a_path_part_that_fails_its_pattern_says_what_it_must_be(control: Any, path: str, param: str,
                                                                 says: str) -> None:  # fmt: skip
    """``PUT …/adapters/UPPER`` answered ``String should match pattern '^[a-z0-9]…$'`` (the regular
    expression), where the same name in a body is told what a name is."""
    method, _, path = path.rpartition(" ")
    answer = control.request(method or "GET", path)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and says in error["message"] and "pattern" not in error["message"], error
    assert "SECRETVAL" not in answer.text
