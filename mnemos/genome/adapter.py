"""``genome.mnemos.dev/v1`` Adapter: an OpenAI-compatible upstream RELAY can route models to."""

from __future__ import annotations

import re
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from mnemos._model import CoreModel, PositiveDuration
from mnemos.genome._base import Resource
from mnemos.genome.metering import CacheSpec, Pricing, UsageLimits

__all__ = ["Adapter", "AdapterAuth", "AdapterRoute", "AdapterSpec", "SecretRef"]


class SecretRef(CoreModel):
    name: str
    key: str


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP token (RFC 9110 ``tchar``): what a header's name, and an auth scheme, are made of."""


class AdapterAuth(CoreModel):
    secret_ref: SecretRef
    header: str = Field("Authorization", max_length=256, description="Header carrying the credential.")
    scheme: str = Field("Bearer", max_length=256, description="Prefix before the secret; empty for none.")

    @field_validator("header", "scheme")
    @classmethod
    def _token(cls, value: str, info: ValidationInfo) -> str:
        """A header name and a scheme are HTTP tokens: one with a space, ``:`` or a line break
        (``X-Key: a\r\nEvil``) was stored, and every request relayed through the Adapter was then a
        500 (the HTTP client refuses to send such a header)."""
        if value == "" and info.field_name == "scheme":
            return value
        if not _TOKEN.fullmatch(value):
            raise ValueError(f"{value[:60]!r} is no HTTP token: letters, digits and !#$%&'*+.^_`|~- only (no space, "
                             "':' or line break), e.g. " + ("Authorization, X-Api-Key" if info.field_name == "header"
                                                            else "Bearer, or empty for none"))  # fmt: skip
        return value


class AdapterRoute(CoreModel):
    match: str = Field(description="Path served through this adapter, e.g. /v1/chat/completions.")
    timeout: PositiveDuration = 60.0


class AdapterSpec(CoreModel):
    type: Literal["http", "grpc"] = "http"
    base_url: str = Field(description="Upstream base URL, e.g. https://api.example.com/v1.")
    auth: AdapterAuth | None = None
    routes: list[AdapterRoute] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list, description="Model names served through this adapter.")
    upstream_model: str | None = Field(None, description="Model name sent upstream; default: the same.")
    retries: int = Field(2, ge=0)
    fallback: str | None = Field(None, description="Another Adapter tried when this one fails.")
    pricing: dict[str, Pricing] = Field(
        default_factory=dict, description="Price per 1k input/output tokens by model name ('*': every model)."
    )
    limits: UsageLimits | None = Field(None, description="Requests/tokens per minute per model, all callers.")
    cache: CacheSpec | None = Field(None, description="Exact-match response cache (opt-in).")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str, info: ValidationInfo) -> str:
        """An ``http(s)://`` URL with a host (``type: grpc``: also ``host:port``, as the seed's Helm
        values name a vLLM Service), and no credentials, query or fragment: the request's path is
        appended to it, and every reader of the Adapter (viewers too) sees it as written."""
        grpc = info.data.get("type") == "grpc"
        schemes = ("http", "https", "grpc", "grpcs") if grpc else ("http", "https")
        try:
            url = urlsplit(value if "://" in value or not grpc else f"grpc://{value}")
            url.port  # noqa: B018 - a port that is no number raises here
        except ValueError as exc:
            raise ValueError(f"is not a URL ({exc})") from None
        if url.scheme not in schemes or not url.hostname:
            example = "host:port or grpc://host:port" if grpc else "an http:// or https:// URL with a host"
            raise ValueError(f"must be {example}, e.g. "
                             f"{'vllm.default.svc.cluster.local:8000' if grpc else 'https://api.example.com/v1'}")
        if url.username is not None or url.password is not None:
            raise ValueError("must not carry credentials (user:password@): every reader of the Adapter sees "
                             "them; put the credential in a Secret and name it in auth.secretRef")  # fmt: skip
        if url.query or url.fragment or value.rstrip().endswith(("?", "#")):
            raise ValueError("must not have a query or fragment (?…, #…): the request's path is appended to "
                             "it; a key sent as a query parameter belongs in a Secret (auth.secretRef)")  # fmt: skip
        return value


class Adapter(Resource):
    API_VERSION: ClassVar[str] = "genome.mnemos.dev/v1"

    api_version: str = API_VERSION
    kind: Literal["Adapter"] = "Adapter"
    spec: AdapterSpec
