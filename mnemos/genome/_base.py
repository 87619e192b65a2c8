"""The Kubernetes-shaped envelope every GENOME resource shares."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from mnemos._model import CoreModel

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
"""A resource name (``metadata.name``): DNS-1123, as Kubernetes names."""
_NAME = re.compile(NAME_PATTERN)
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
"""A Kubernetes label (or annotation) key: an optional DNS-subdomain prefix and ``/``, then a name of 1-63
characters."""
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
"""A Kubernetes label value: empty, or up to 63 letters, digits, '-', '_', '.', starting and ending with a
letter or digit."""
_LABEL_KEY = re.compile(LABEL_KEY_PATTERN)
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)


def check_label_key(key: str) -> bool:
    """Whether ``key`` is a Kubernetes label key (``LABEL_KEY_PATTERN``, its prefix at most 253 characters)."""
    return _LABEL_KEY.fullmatch(key) is not None and len(key.partition("/")[0]) <= 253


_NAME_PART = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def name_problem(value: object) -> str | None:
    """Why ``value`` is not a resource name (a Kubernetes DNS-1123 subdomain: at most 253 characters,
    dot-separated parts of lowercase letters, digits and '-', each starting and ending with a letter
    or digit), or None when it is one."""
    if isinstance(value, str) and _NAME.fullmatch(value) and all(map(_NAME_PART.fullmatch, value.split("."))):
        return None
    return (f"{_shown(str(value))} is not a valid name: use at most 253 lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, and a letter or digit on each side of every '.'")


def check_name(kind: str, name: object) -> str:
    """``name`` when it can name a stored resource of ``kind`` (``NAME_PATTERN``: what a lookup, a
    delete or an API path takes, so a name stored before a check was added can still be read and
    deleted), else a ``ValidationError`` naming ``name`` and the rule. A name never reaches a
    registry key or a URL unchecked (``../x``, ``a/b``, ``a?b``)."""
    if isinstance(name, str) and _NAME.fullmatch(name):
        return name
    from mnemos.errors import ValidationError

    raise ValidationError(f"{kind.lower()} name: {name_problem(name)}", param="name")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 100 else f"{text[:100]}…")


class ObjectMeta(CoreModel):
    """``metadata``: a DNS-1123 name, labels, annotations; generation is set by the registry."""

    name: str = Field(description="DNS-1123 name: lowercase letters, digits, '-', '.'.")
    namespace: str | None = Field(None, description="Accepted for Kubernetes compatibility; not used.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = Field(None, ge=0, description="Set by the registry on apply.")
    creation_timestamp: str | None = Field(None, description="Set by the registry on apply.")
    deletion_timestamp: str | None = Field(
        None, description="Set by the registry in a resource's history: when this generation was deleted.")

    @field_validator("name")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("labels", "annotations")
    @classmethod
    def _kubernetes_keys(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for key, text in value.items():
            if not check_label_key(key):
                raise ValueError(
                    f"{_shown(key)} is not a valid {info.field_name[:-1]} key: an optional DNS-subdomain prefix and "
                    "'/', then 1-63 letters, digits, '-', '_' or '.' starting and ending with a letter or digit "
                    "(e.g. team, example.com/stage)"
                )
            if info.field_name == "labels" and not _LABEL_VALUE.fullmatch(text):
                raise ValueError(
                    f"label {key}: {_shown(text)} is not a valid label value: up to 63 letters, digits, '-', '_' or "
                    "'.', starting and ending with a letter or digit (an annotation holds any text)"
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
            raise ValueError(f"apiVersion {_shown(value)} is not valid for this kind: use {cls.API_VERSION!r}")
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
