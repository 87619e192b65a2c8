"""The Kubernetes-shaped envelope every GENOME resource shares."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field, field_validator

from mnemos._model import CoreModel

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
"""A resource name (``metadata.name``): DNS-1123, as Kubernetes names."""
_NAME = re.compile(NAME_PATTERN)


class ObjectMeta(CoreModel):
    """``metadata``: a DNS-1123 name, labels, annotations; generation is set by the registry."""

    name: str = Field(description="DNS-1123 name: lowercase letters, digits, '-', '.'.")
    namespace: str | None = Field(None, description="Accepted for Kubernetes compatibility; not used.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = Field(None, description="Set by the registry on apply.")
    creation_timestamp: str | None = Field(None, description="Set by the registry on apply.")

    @field_validator("name")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid name: use lowercase letters, digits, '-' and '.', "
                "starting and ending with a letter or digit"
            )
        return value


class Resource(CoreModel):
    """Base of Model, Policy, Adapter, Pipeline: ``apiVersion``, ``kind``, ``metadata``, ``spec``."""

    API_VERSION: ClassVar[str] = ""

    api_version: str = Field(description="Group and version, e.g. genome.mnemos.dev/v1.")
    metadata: ObjectMeta
    spec: Any

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if value != cls.API_VERSION:
            raise ValueError(f"apiVersion {value!r} is not valid for this kind: use {cls.API_VERSION!r}")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def generation(self) -> int | None:
        return self.metadata.generation

    def dump(self) -> dict[str, Any]:
        """The document as users write it: apiVersion, kind, metadata, spec (camelCase)."""
        data = super().dump()
        return {k: data[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in data}

    def spec_dump(self) -> dict[str, Any]:
        """The spec as stored: what decides whether an apply makes a new generation."""
        return self.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
