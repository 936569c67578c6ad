"""The package's shape (issue 9): no import cycle, no arrow from a lower layer up to a higher one,
no module over ~500 lines without its docstring saying why. Imports inside functions count: a lazy
import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "lseg"
#: Lower layers and what they must never import (not even inside a function).
LOWER = ("lseg.models", "lseg.data", "lseg.io", "lseg.geometry", "lseg.errors", "lseg.options")
HIGHER = ("lseg.cli", "lseg.app", "lseg.train", "lseg.eval", "lseg.export", "lseg.features")
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The lseg modules ``path`` imports (resolved to modules that exist; ``from pkg import mod``
    counts as ``pkg.mod``), ``TYPE_CHECKING`` blocks left out."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for child in node.body for n in ast.walk(child)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names} & modules
            found.update(subs)  # ``from pkg import mod``: the module
            if len(subs) < len(node.names):  # ``from mod import name``: the module holding it
                found.add(base)
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def _in(name: str, layers: tuple[str, ...]) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in layers)


def test_no_import_cycle(graph):
    """Strongly connected components of the module graph (package ``__init__`` files that only
    re-export lazily, ``lseg`` itself, are left out: they point at everything by design)."""
    nodes = {n for n in graph if n != "lseg"}
    edges = {n: {m for m in graph[n] if m in nodes} for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_arrow_from_a_lower_layer_up(graph):
    up = sorted((a, b) for a, deps in graph.items() if _in(a, LOWER) for b in deps if _in(b, HIGHER))
    assert not up, f"lower layers importing higher ones: {up}"


def test_no_long_module_without_a_reason():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if n > MAX_LINES and "one module on purpose" not in doc.lower():
            long.append(f"{path.relative_to(PACKAGE.parent)} ({n} lines)")
    assert not long, f"over {MAX_LINES} lines with no reason in the docstring: {long}"
