"""Credential names written in camelCase are masked as their snake_case twins are.

``accessToken``, ``hfToken``, ``authToken`` and ``apiToken`` (a JavaScript client's, a YAML author's
spelling) were kept in clear by lineage, sealed by no run and refused by no Pipeline, while
``access_token`` and ``hf_token`` were: the rule lowercased the name without splitting its humps.
"""

from __future__ import annotations

import pytest

from mnemos.trace.lineage import mask_secrets


@pytest.mark.parametrize("name", ["accessToken", "hfToken", "authToken", "apiToken", "refreshToken", "dbPassword",
                                  "clientSecret", "apiKey", "awsSecretAccessKey"])  # fmt: skip
def test_a_camel_case_credential_name_is_masked(name: str) -> None:
    assert mask_secrets({name: "s3cr3t-value"}) == {name: "***"}


@pytest.mark.parametrize("name", ["maxTokens", "bosToken", "nextToken", "tokenizer", "modelName", "topP"])
def test_a_camel_case_name_that_is_no_credential_is_kept(name: str) -> None:
    assert mask_secrets({name: "kept"}) == {name: "kept"}
