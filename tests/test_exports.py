"""Exports (after httpx's tests/test_exported_members.py): every public module of ``mnemos`` has an
``__all__``, and every name listed in any ``__all__`` is importable from its module."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import mnemos

# Importing ``mnemos.__main__`` runs the CLI.
_SKIP = {"mnemos.__main__"}


def _is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


@pytest.fixture(scope="module")
def modules() -> dict[str, ModuleType]:
    """Every module of the package, imported (an import error fails the test that needs it)."""
    names = ["mnemos"] + [m.name for m in pkgutil.walk_packages(mnemos.__path__, "mnemos.")]
    return {name: importlib.import_module(name) for name in sorted(names) if name not in _SKIP}


def test_walk_finds_the_components(modules: dict[str, ModuleType]) -> None:
    for component in ("engram", "genome", "soul", "trace", "cortex", "neuron", "synkron", "relay", "wraith", "cradle"):
        assert f"mnemos.{component}" in modules, component


def test_every_public_module_has_all(modules: dict[str, ModuleType]) -> None:
    missing = [name for name, module in modules.items() if _is_public(name) and not hasattr(module, "__all__")]
    assert not missing, f"public modules without __all__: {missing}"


def test_every_name_in_all_is_importable(modules: dict[str, ModuleType]) -> None:
    broken = []
    for name, module in modules.items():
        exported = getattr(module, "__all__", None)
        if exported is None:
            continue
        assert isinstance(exported, (list, tuple)), f"{name}.__all__ is a {type(exported).__name__}"
        broken += [f"{name}.{member}" for member in exported if not hasattr(module, member)]
        assert len(set(exported)) == len(exported), f"{name}.__all__ lists a name twice"
    assert not broken, f"names in __all__ that do not import: {broken}"


def test_star_import_of_each_component() -> None:
    for component in ("engram", "genome", "soul", "trace", "cortex", "neuron", "synkron", "relay", "wraith", "cradle"):
        namespace: dict[str, object] = {}
        exec(f"from mnemos.{component} import *", namespace)  # noqa: S102 - what a user's `import *` does
        module = importlib.import_module(f"mnemos.{component}")
        assert set(module.__all__) <= set(namespace), component
