"""The Function the guides call, ``word-count``, works as written: ``deployments/local/functions.yaml``
registers ``mnemos.examples:word_count``, and a developer calls it by name over the gateway (the CLI,
``curl``'s request, the remote client), its arguments checked against its ``parameters``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests_support import REPO

import mnemos
from mnemos.errors import ValidationError
from mnemos.examples import word_count
from mnemos.genome import parse_resource
from mnemos.genome.kinds import resources_of

FUNCTIONS = REPO / "deployments" / "local" / "functions.yaml"


def _mnemos(home: Path, url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``mnemos --url URL ARGS…`` with ``MNEMOS_API_KEY=key``, in a fresh process and home."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "MNEMOS_HOME": str(home), "PYTHONPATH": str(REPO),
           "MNEMOS_API_KEY": key}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "mnemos", "--url", url, *args], env=env, cwd=home,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def applied(frontdoor: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mnemos apply -f deployments/local/functions.yaml`` by an operator, over the gateway; the home
    a developer's CLI runs in."""
    home = tmp_path_factory.mktemp("word-count-home")
    done = _mnemos(home, frontdoor.url, frontdoor.keys["operator"], "apply", "-f", str(FUNCTIONS))
    assert done.returncode == 0 and re.search(r"function/word-count (created|unchanged)", done.stdout), done
    return home


def test_word_count_counts_each_word() -> None:
    assert word_count("one two two\nthree  one") == {"one": 2, "two": 2, "three": 1}
    assert word_count("") == {}


def test_the_guides_command_line_prints_the_counts(frontdoor: Any, applied: Path) -> None:
    done = _mnemos(applied, frontdoor.url, frontdoor.keys["developer"], "jobs", "submit", "word-count",
                   "-k", "text=one two three", "--wait")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"one": 1, "two": 1, "three": 1}


def test_a_developer_calls_it_over_http(frontdoor: Any, applied: Path) -> None:
    headers = {"Authorization": f"Bearer {frontdoor.keys['developer']}"}
    body = {"function": "word-count", "kwargs": {"text": "one two three two"}, "priority": 1}  # the guide's curl
    queued = httpx.post(f"{frontdoor.url}/v1/jobs", json=body, headers=headers, timeout=60)
    assert queued.status_code < 300, queued.text
    assert queued.json()["function"] == "mnemos.examples:word_count"
    done = httpx.get(f"{frontdoor.url}/v1/jobs/{queued.json()['id']}", params={"wait": 60}, headers=headers,
                     timeout=90)  # fmt: skip
    assert done.json()["status"] == "succeeded", done.text
    assert done.json()["result"]["value"] == {"one": 1, "two": 2, "three": 1}

    for kwargs, param, named in (({"text": 3}, "kwargs.text", "3 is not of type 'string'"),
                                 ({"text": "a b", "lang": "en"}, "kwargs", "'lang' was unexpected"),
                                 ({}, "kwargs", "'text' is a required property")):  # fmt: skip
        refused = httpx.post(f"{frontdoor.url}/v1/jobs", json={"function": "word-count", "kwargs": kwargs},
                             headers=headers, timeout=60)  # fmt: skip
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["param"] == param and named in error["message"], error
    viewer = {"Authorization": f"Bearer {frontdoor.keys['viewer']}"}  # viewers lack the verb submit
    refused = httpx.post(f"{frontdoor.url}/v1/jobs", json=body, headers=viewer, timeout=60)
    assert refused.status_code == 403 and "may not 'submit'" in refused.json()["error"]["message"], refused.text


def test_a_developer_calls_it_from_the_remote_client(frontdoor: Any, applied: Path) -> None:
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["developer"]) as client:
        job = client.jobs.submit("word-count", text="one two three")
        assert job.result(timeout=90) == {"one": 1, "two": 1, "three": 1}
        handles = client.jobs.submit_many("word-count", [{"text": "a b"}, {"text": "c"}])
        assert client.jobs.results(handles, timeout=90) == [{"a": 1, "b": 1}, {"c": 1}]
        with pytest.raises(ValidationError) as refused:
            client.jobs.submit("word-count", text=["a", "b"])
        assert refused.value.status == 422 and refused.value.param == "kwargs.text"


def test_the_security_guide_shows_the_function_the_local_deployment_registers() -> None:
    guide = (REPO / "docs" / "guides" / "security.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", guide, re.S) if "kind: Function" in b)
    (registered,) = resources_of(FUNCTIONS)
    assert parse_resource(yaml.safe_load(block)).spec == registered.spec
