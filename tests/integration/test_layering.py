"""The package's shape: every package on a named floor, imports only to its own package or a lower
floor, at most 8 floors, no import cycle, no module over 500 lines. Imports inside functions count:
a lazy import is still a dependency."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "lseg"
#: The floors, lowest first: a package imports only itself and packages on lower floors.
FLOORS = (
    ("lseg.errors", "lseg.geometry", "lseg.console"),  # the ground: no lseg import
    ("lseg.options", "lseg.labels"),  # options declared once; label lists and templates
    ("lseg.io", "lseg.models"),  # the front door and the exit; the networks (no weights, no Hub)
    ("lseg.jobs", "lseg.viz", "lseg.data", "lseg.pretrained", "lseg.export"),  # engine, pictures, datasets, weights
    ("lseg.inference", "lseg.app"),  # the predictor and its results; the web demo
    ("lseg.eval", "lseg.features"),  # metrics and benchmarks; features for 3D
    ("lseg.train",),
    ("lseg.cli",),  # every command (and ``python -m lseg``, which runs it)
)
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


def _package(module: str) -> str:
    return "lseg.cli" if module == "lseg.__main__" else ".".join(module.split(".")[:2])


def _floor(module: str) -> int:
    module = _package(module)
    for i, names in enumerate(FLOORS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    raise AssertionError(f"{module} is on no floor: add its package to FLOORS")


def test_every_module_is_on_a_floor_and_imports_only_downward(graph):
    assert len(FLOORS) <= 8
    up = []
    for a, deps in graph.items():
        if a == "lseg":  # the package's face: lazy re-exports of the public API
            continue
        for b in deps:
            if b == "lseg":
                continue
            if _package(a) != _package(b) and _floor(b) >= _floor(a):
                up.append((a, b))
    assert not up, f"imports that do not go down a floor: {sorted(up)}"


def test_no_long_module():
    long = [f"{path.relative_to(PACKAGE.parent)} ({n} lines)" for path in sorted(PACKAGE.rglob("*.py"))
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_the_documented_layout_names_what_exists() -> None:
    """docs/development.md's layout block lists every package of lseg/ and every file of benchmarks/
    and scripts/, and each ``name.py`` it names under a package exists there."""
    text = (PACKAGE.parent / "docs" / "development.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    listed: dict[str, list[str]] = {}
    current = None
    for line in block.splitlines():
        if re.match(r"  \S", line):  # a new entry of lseg/: a package, or a top-level module
            current = m.group(1) if (m := re.match(r"  (\w+)/ ", line)) else None
            if current:
                listed[current] = []
        elif not line.startswith(" "):  # tests/, benchmarks/, scripts/
            current = None
        if current:
            listed[current] += re.findall(r"\b(\w+)\.py\b", line)
    missing = [f"lseg/{pkg}/{name}.py" for pkg, names in listed.items() for name in names
               if not (PACKAGE / pkg / f"{name}.py").is_file()]
    assert not missing, f"docs/development.md names modules that do not exist: {missing}"
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages <= set(listed), f"packages missing from the layout: {sorted(packages - set(listed))}"
    files = [p for folder in ("benchmarks", "scripts") for p in (PACKAGE.parent / folder).iterdir() if p.is_file()]
    unnamed = [p.name for p in files if p.name not in block]
    assert not unnamed, f"files missing from the layout: {unnamed}"
