"""Over the gateway a refusal is raised as the error the embedded client raises: the answer's
``code`` picks the exact class where its status alone would not (an admission refusal is a 403,
raised as ``AdmissionError``, as the jobs guide says; it was ``PermissionDeniedError``)."""

from __future__ import annotations

import httpx
import pytest

from mnemos import errors
from mnemos.remote import _error_of


def _answer(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"message": "refused", "type": "x", "param": "resources.gpus", "code": code}}
    return httpx.Response(status, json=body, headers=headers, request=httpx.Request("POST", "http://gw/v1/jobs"))


@pytest.mark.parametrize(("status", "code", "cls"), [
    (403, "admission_refused", errors.AdmissionError),
    (403, "model_not_allowed", errors.ModelAccessError),
    (403, "permission_denied", errors.PermissionDeniedError),
    (400, "context_length_exceeded", errors.ContextLengthError),
    (422, "invalid_key", errors.InvalidKeyError),
    (415, "unsupported_media_type", errors.UnsupportedMediaTypeError),
    (404, "admission_refused", errors.NotFoundError),  # a code that does not fit its status: the status decides
])  # fmt: skip
def test_the_code_picks_the_exact_error_its_status_allows(status: int, code: str, cls: type) -> None:
    raised = _error_of(_answer(status, code))
    assert type(raised) is cls and raised.message == "refused" and raised.param == "resources.gpus"


def test_a_spent_budget_is_a_budget_error_that_says_when_to_retry() -> None:
    raised = _error_of(_answer(429, "insufficient_quota", {"retry-after": "7"}))
    assert type(raised) is errors.BudgetExceededError and raised.retry_after == 7.0
