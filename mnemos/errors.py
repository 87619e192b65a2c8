"""The one error tree of MNEMOS.

Every error a user can cause maps to one HTTP status and one CLI exit code::

    MnemosError                       500  exit 1
    ├── ClientError                   400  exit 2   the caller can fix it
    │   ├── ValidationError           422  exit 2   a field is wrong (names its path)
    │   │   └── InvalidKeyError       422  exit 2   an ENGRAM key with `..`, `/…` or NUL
    │   ├── BadRequestError           400  exit 2   malformed input (JSON, YAML)
    │   ├── AuthenticationError       401  exit 6
    │   ├── PermissionDeniedError     403  exit 7
    │   │   └── AdmissionError        403  exit 7   refused by admission (names the rule)
    │   ├── NotFoundError             404  exit 3
    │   ├── ConflictError             409  exit 4
    │   ├── PayloadTooLargeError      413  exit 2
    │   ├── UnsupportedMediaTypeError 415  exit 2   a body that is not JSON where JSON is read
    │   ├── RateLimitError            429  exit 8   carries retry_after seconds
    │   │   └── BudgetExceededError   429  exit 8   a spend/token budget is used up
    │   └── MissingDependencyError    501  exit 9   names the extra to install
    └── ServerError                   500  exit 1   MNEMOS or its infrastructure failed
        ├── IntegrityError            500  exit 5   stored bytes do not match their digest
        ├── UnavailableError          503  exit 10  the platform or a model is not up
        └── UpstreamError             502  exit 11  an upstream adapter failed

`to_openai()` renders the OpenAI error shape used on `/v1`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

__all__ = [
    "AdmissionError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ClientError",
    "ConflictError",
    "ContextLengthError",
    "IntegrityError",
    "InvalidKeyError",
    "MissingDependencyError",
    "MnemosError",
    "ModelAccessError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "UpstreamError",
    "ValidationError",
    "redact_userinfo",
]


class MnemosError(Exception):
    """Root of every error MNEMOS raises on purpose."""

    status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1
    code: ClassVar[str] = "internal_error"
    type: ClassVar[str] = "server_error"

    def __init__(self, message: str, *, param: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.details = details

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI error body: ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep keyword-only fields when the error crosses a Ray call.
        return (_rebuild, (type(self), self.message, self.param, self.details))


def _rebuild(cls: type[MnemosError], message: str, param: str | None, details: dict[str, Any]) -> MnemosError:
    return cls(message, param=param, **details)


class ClientError(MnemosError):
    """The caller can fix this: bad input, missing rights, unknown names."""

    status = 400
    exit_code = 2
    code = "bad_request"
    type = "invalid_request_error"


class ValidationError(ClientError):
    """A field failed validation; ``param`` is its dotted path."""

    status = 422
    code = "validation_error"


class InvalidKeyError(ValidationError):
    """An ENGRAM key that is empty, absolute, contains ``..`` or NUL."""

    code = "invalid_key"


class BadRequestError(ClientError):
    """Input that could not be parsed at all (malformed JSON or YAML)."""

    code = "bad_request"


class AuthenticationError(ClientError):
    """Missing, expired, forged or revoked credentials."""

    status = 401
    exit_code = 6
    code = "invalid_api_key"
    type = "authentication_error"


class PermissionDeniedError(ClientError):
    """The principal is known but may not do this."""

    status = 403
    exit_code = 7
    code = "permission_denied"
    type = "permission_error"


class ModelAccessError(PermissionDeniedError):
    """A Policy's access rules do not open the model to this caller."""

    code = "model_not_allowed"


class AdmissionError(PermissionDeniedError):
    """Admission refused a resource or a job; the message names the rule."""

    code = "admission_refused"


class NotFoundError(ClientError):
    """A resource, model, job, ref or blob that does not exist."""

    status = 404
    exit_code = 3
    code = "not_found"


class ConflictError(ClientError):
    """The request conflicts with the current state."""

    status = 409
    exit_code = 4
    code = "conflict"


class PayloadTooLargeError(ClientError):
    """A request body over the configured limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ClientError):
    """A request body declared as something other than JSON, to a route that reads JSON."""

    status = 415
    code = "unsupported_media_type"

    @classmethod
    def not_json(cls, declared: str) -> UnsupportedMediaTypeError:
        """The error for a body sent with the ``declared`` Content-Type (``""``: none) where JSON is read."""
        media = declared.split(";")[0].strip()
        said = f"Content-Type {media!r}" if media else "no Content-Type"
        return cls(f"the request body must be JSON, sent with Content-Type: application/json (it came with {said}; "
                   "curl: -H 'Content-Type: application/json')", param="content-type")  # fmt: skip


class RateLimitError(ClientError):
    """Over the principal's rate limit; ``retry_after`` is in seconds."""

    status = 429
    exit_code = 8
    code = "rate_limit_exceeded"
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float = 1.0, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after


class BudgetExceededError(RateLimitError):
    """A key's or team's budget for the current window is spent (OpenAI's ``insufficient_quota``,
    its type too: clients tell it from a rate limit and stop retrying)."""

    code = "insufficient_quota"
    type = "insufficient_quota"


class ContextLengthError(BadRequestError):
    """A prompt longer than the model's context (OpenAI's ``context_length_exceeded``: clients such
    as LangChain look for this code to trim the conversation)."""

    code = "context_length_exceeded"


class MissingDependencyError(ClientError):
    """An optional dependency is not installed; the message names the extra."""

    status = 501
    exit_code = 9
    code = "missing_dependency"


class ServerError(MnemosError):
    """MNEMOS or the infrastructure under it failed."""


class IntegrityError(ServerError):
    """Stored bytes do not match the digest they are stored under."""

    exit_code = 5
    code = "integrity_error"


class UnavailableError(ServerError):
    """The platform, a model deployment or a store is not reachable."""

    status = 503
    exit_code = 10
    code = "unavailable"


class UpstreamError(ServerError):
    """An upstream adapter failed after its retries and fallbacks."""

    status = 502
    exit_code = 11
    code = "upstream_error"


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s]+@")
"""Up to the authority's last ``@``: a password with a raw ``@`` in it (``u:p@ss@host``) is all masked."""


def redact_userinfo(text: str) -> str:
    """``https://user:token@host/x`` → ``https://***@host/x`` anywhere in ``text``: what a message, a
    log line or a lineage record may show of a URL that carries a credential."""
    return _USERINFO.sub(r"\g<scheme>***@", text)
