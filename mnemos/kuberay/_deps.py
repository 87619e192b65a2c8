"""Lazy imports of the optional libraries this package needs (the table is ``mnemos._deps``)."""

from __future__ import annotations

from types import ModuleType

from mnemos._deps import require as _require

__all__ = ["require"]


def require(module: str) -> ModuleType:
    """Import ``module``; a missing one is a ``MissingDependencyError`` naming ``mnemos[kuberay]``."""
    return _require(module, why="KubeRay manifests")
