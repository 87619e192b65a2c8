"""Layering: no import circles among ``mnemos`` modules, and no component imports one above it.

This file is the source of truth for the layering drawn in ``docs/architecture.md``. It reads the
source with :mod:`ast` (nothing is imported), so it sees every ``import`` of a ``mnemos`` module:
at module level, inside functions and classes, and under ``if TYPE_CHECKING:``. Relative imports
are resolved. Imports of third-party packages are not looked at (lazy ones are fine).

* A circle is any cycle in the graph of module imports. Importing ``mnemos.a.b`` also runs the
  package ``mnemos.a`` (its ``__init__``), so that edge is counted too (except for the packages the
  importing module itself lives in, which Python has already started).
* A component may import itself, and components in lower layers; layers 0 and 9 may also import
  each other's members. A function-level import that points down is fine (it may keep import time
  low); one that points up is not: pass what is needed (a small context object) instead.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "mnemos"

# Bottom to top. A key is a module or a package (everything below it belongs to it); the longest
# matching key wins. A new top-level module must be placed here (the test says so).
LAYERS: dict[str, int] = {
    # 0: the base every component uses
    "mnemos.errors": 0,
    "mnemos.config": 0,
    "mnemos._model": 0,
    "mnemos._actors": 0,
    "mnemos._deps": 0,
    "mnemos._gil": 0,
    "mnemos._heap": 0,
    "mnemos._http": 0,
    "mnemos._master_key": 0,
    "mnemos._version": 0,
    # 1: observability: metrics, spans, events, lineage (written to a store it is handed)
    "mnemos.trace": 1,
    # 2: storage
    "mnemos.engram": 2,
    # 3: resources and the registry
    "mnemos.genome": 3,
    # 4: identities and limits; workers and runtimes
    "mnemos.soul": 4,
    "mnemos.neuron": 4,
    # 5: the scheduler (dispatches to NEURON's pools)
    "mnemos.cortex": 5,
    # 6: what runs on CORTEX: pipelines, cron tasks
    "mnemos.synkron": 6,
    "mnemos.wraith": 6,
    # 7: the front door (serves every component's API)
    "mnemos.relay": 7,
    # 8: bringing the platform up, locally or on Kubernetes
    "mnemos.cradle": 8,
    "mnemos.kuberay": 8,
    # 9: what users hold: the notebook facade, the HTTP client, the CLI
    "mnemos.remote": 9,
    "mnemos.client": 9,
    "mnemos.cli": 9,
    "mnemos.__main__": 9,
    "mnemos": 9,
}
# Layers whose members may import each other (cycles are still caught by the circle check).
_OPEN_LAYERS = {0, 9}


@dataclass(frozen=True)
class Import:
    """One ``import`` statement of a ``mnemos`` module, as read from the source."""

    source: str  # the importing module
    target: str  # the imported module (``from pkg import name`` resolves to ``pkg.name`` if a module)
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _resolve(name: str) -> str | None:
    """The longest prefix of ``name`` that is a module of ours (``pkg.func`` -> ``pkg``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules():
            return candidate
        parts.pop()
    return None


def _imports_of(name: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: list[Import] = []

    def add(target: str, node: ast.stmt, in_function: bool) -> None:
        resolved = _resolve(target)
        imp = Import(name, resolved or "", node.lineno, in_function)
        if resolved is not None and resolved != name and imp not in found:
            found.append(imp)

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mnemos":
                    add(alias.name, node, in_function)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "mnemos":
                for alias in node.names:
                    add(f"{module}.{alias.name}", node, in_function)
        for child in ast.iter_child_nodes(node):
            visit(child, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


@cache
def all_imports() -> tuple[Import, ...]:
    return tuple(imp for name, path in modules().items() for imp in _imports_of(name, path))


def layer_of(module: str) -> tuple[str, int]:
    """(component, layer) of a module: the longest key of ``LAYERS`` it falls under."""
    parts = module.split(".")
    while parts:
        key = ".".join(parts)
        if key in LAYERS:
            return key, LAYERS[key]
        parts.pop()
    raise KeyError(module)


def _graph() -> dict[str, set[str]]:
    """Module -> modules whose import runs when it runs (targets plus their parent packages)."""
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for imp in all_imports():
        own_packages = {".".join(imp.source.split(".")[:i]) for i in range(1, imp.source.count(".") + 1)}
        parts = imp.target.split(".")
        for i in range(2, len(parts) + 1):
            step = ".".join(parts[:i])
            if step not in own_packages and step != imp.source:
                graph[imp.source].add(step)
    return graph


def find_cycles() -> list[list[str]]:
    """One cycle path per strongly connected component of the import graph (Tarjan)."""
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:  # recursion depth is bounded by the number of modules
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_through(graph, component) for component in components]


def _cycle_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle from the first member of a strongly connected component back to itself."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    return component  # unreachable for a strongly connected component


def upward_imports() -> list[str]:
    """Imports from a component to another one that is not below it, as readable lines."""
    bad = []
    for imp in all_imports():
        (src_comp, src_layer), (dst_comp, dst_layer) = layer_of(imp.source), layer_of(imp.target)
        if src_comp == dst_comp or dst_layer < src_layer or (src_layer == dst_layer and src_layer in _OPEN_LAYERS):
            continue
        where = "in a function" if imp.in_function else "at module level"
        bad.append(
            f"{imp.source} (layer {src_layer}) imports {imp.target} (layer {dst_layer}) {where}, "
            f"{modules()[imp.source].relative_to(ROOT.parent)}:{imp.line}"
        )
    return bad


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for name in modules():
        try:
            layer_of(name)
        except KeyError:
            unplaced.append(name)
    assert not unplaced, f"place these modules in LAYERS of tests/test_layering.py: {unplaced}"


def test_the_walk_sees_imports() -> None:
    """Guard the guard: the walk finds known imports of each kind."""
    seen = {(imp.source, imp.target) for imp in all_imports()}
    assert ("mnemos.engram.store", "mnemos.errors") in seen  # module level
    assert any(imp.in_function for imp in all_imports())  # function level
    assert len(modules()) > 100


def test_no_import_circles() -> None:
    cycles = find_cycles()
    assert not cycles, "import circles among mnemos modules:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_upward_imports() -> None:
    bad = upward_imports()
    assert not bad, "imports that point up the layering (docs/architecture.md):\n" + "\n".join(bad)


def test_detects_a_circle_and_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks fail on a planted circle and a planted upward import."""
    pkg = tmp_path / "mnemos"
    (pkg / "engram").mkdir(parents=True)
    (pkg / "relay").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "engram" / "__init__.py").write_text("")
    (pkg / "engram" / "store.py").write_text("from mnemos.errors import X\nfrom . import logs\n")
    logs = "def f():\n    from .store import Store\n    from mnemos.relay import app\n"
    (pkg / "engram" / "logs.py").write_text(logs)
    (pkg / "relay" / "__init__.py").write_text("")
    (pkg / "relay" / "app.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    modules.cache_clear()
    all_imports.cache_clear()
    try:
        assert find_cycles() == [["mnemos.engram.logs", "mnemos.engram.store", "mnemos.engram.logs"]]
        [line] = upward_imports()
        assert "mnemos.engram.logs (layer 2) imports mnemos.relay.app (layer 7) in a function" in line
    finally:
        monkeypatch.undo()
        modules.cache_clear()
        all_imports.cache_clear()
