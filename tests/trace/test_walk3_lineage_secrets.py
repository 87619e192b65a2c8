"""Lineage masks the usual names of credentials in a run's params (``hf_token``, ``aws_secret_access_key``,
``github_token`` …), as the pipelines guide says ("keys named like token, password, api_key"), while a
tokenizer's special tokens and token counts stay readable."""

from __future__ import annotations

from mnemos.trace.lineage import graph, record


def test_credential_names_in_params_are_masked(local_engram) -> None:
    secrets = {"hf_token": "hf_abc", "aws_secret_access_key": "wJalr", "GITHUB_TOKEN": "ghp_x", "auth-token": "t",
               "db_password_file": "/run/pw", "client_secret_value": "s", "openai_api_key": "sk-1",
               "aws_access_key": "k", "secret_key": "k2"}  # fmt: skip
    plain = {"eos_token": "<|end|>", "pad_token": "<|pad|>", "max_tokens": 24, "prompt_tokens": 3, "limit": 8,
             "tokenizer": "gpt2", "aws_access_key_id": "AKIA", "credential": "k1"}  # fmt: skip
    record(local_engram, "run:r-walk3", "intent", params={**secrets, **plain})
    params = graph(local_engram, "run:r-walk3")["nodes"][0]["attrs"]["params"]
    assert params == {**dict.fromkeys(secrets, "***"), **plain}
