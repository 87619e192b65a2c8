"""Lazy imports of the optional libraries this package needs (one table, one message)."""

from __future__ import annotations

import importlib
from types import ModuleType

from mnemos.errors import MissingDependencyError

__all__ = ["require"]

# module -> (PyPI package, mnemos extra that installs it)
_PACKAGES: dict[str, tuple[str, str]] = {
    "kubernetes": ("kubernetes", "kuberay"),
    "jsonschema": ("jsonschema", "kuberay"),
}


def require(module: str) -> ModuleType:
    """Import ``module``; a missing one is a ``MissingDependencyError`` naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        package, extra = _PACKAGES.get(top, (top, "kuberay"))
        raise MissingDependencyError(
            f"{module} is not installed: pip install 'mnemos[{extra}]' (or pip install {package})",
            package=package,
            extra=extra,
        ) from exc
