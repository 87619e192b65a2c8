"""Lazy imports of optional packages: one table, one message naming the extra to install.

>>> hvac = require("hvac", why="the vault secret store", param="soul.secretStore")

A missing package is a ``MissingDependencyError`` (HTTP 501, CLI exit 9) that says which extra of
``mnemos`` installs it, e.g. ``pip install 'mnemos[vault]'``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mnemos.errors import MissingDependencyError

__all__ = ["EXTRAS", "require"]

EXTRAS: dict[str, tuple[str, str]] = {
    # import name -> (PyPI package, mnemos extra that installs it)
    "hvac": ("hvac", "vault"),
    "jsonschema": ("jsonschema", "kuberay"),
    "kubernetes": ("kubernetes", "kuberay"),
    "opentelemetry.exporter.otlp": ("opentelemetry-exporter-otlp-proto-grpc", "otlp"),
    "sentence_transformers": ("sentence-transformers", "embed"),
    "tokenizers": ("tokenizers", "llm"),
    "torch": ("torch", "llm"),
    "transformers": ("transformers", "llm"),
    "vllm": ("vllm", "vllm"),
}


def _entry(module: str) -> tuple[str, str]:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        if (key := ".".join(parts[:i])) in EXTRAS:
            return EXTRAS[key]
    raise KeyError(f"{module} is not an optional dependency of mnemos: add it to EXTRAS in mnemos/_deps.py")


def require(module: str, *, why: str = "", param: str | None = None) -> ModuleType:
    """Import ``module`` (listed in ``EXTRAS``); a missing one raises ``MissingDependencyError``.

    Args:
        module: the import name, e.g. ``"hvac"`` or ``"opentelemetry.exporter.otlp.proto.grpc.trace_exporter"``.
        why: what needs it, for the message (``"the vault secret store"``).
        param: the setting or field that asked for it (the error's ``param``).
    """
    package, extra = _entry(module)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise MissingDependencyError(
            f"{why or module} needs {missing}, which is not installed: pip install 'mnemos[{extra}]'",
            param=param,
            package=package,
            extra=extra,
        ) from None
