"""
The core's structure: layers without import cycles, no module reaching into another's private
names, and small modules.

The import graph counts every import of a ``conveyor`` module — top-level, function-local and
under ``TYPE_CHECKING`` alike — read from the sources with :mod:`ast`, so a cycle that only the
type checker sees still fails here. Importing a submodule does not count as importing its parent
packages (Python runs their ``__init__`` first, but that is not a dependency of the code).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core" / "conveyor"
PLUGIN_PACKAGES = {
    "conveyor_dask": ROOT / "plugins" / "dask_runner" / "conveyor_dask",
    "conveyor_ray": ROOT / "plugins" / "ray_runner" / "conveyor_ray",
}
MAX_LINES = 400

# Private names of the standard library that the code may use: documented escape hatches.
STDLIB_PRIVATE = {"_exit", "_getframe", "_current_frames", "_replace", "_asdict", "_fields"}


def _modules(package: str, folder: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([package, *parts])] = path
    return found


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every import of a known module."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name, "", node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, path, node)
            if source not in known:
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in known:
                    yield sub, "", node.lineno
                else:
                    yield source, alias.name, node.lineno


def _graph(package: str, folder: Path) -> tuple[dict[str, set[str]], dict[str, Path]]:
    modules = _modules(package, folder)
    known = set(modules)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for target, _name, _line in _imports(module, path, known):
            if target != module:
                edges[module].add(target)
    return edges, modules


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _owned_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: its functions, classes, attributes and slots."""
    owned: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            owned.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            owned.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            owned.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            owned.add(node.target.id)
            owned.add(node.target.id.lstrip("_"))  # an attrs field `_x` has the init name `x`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            owned.add(node.value)  # __slots__ entries, getattr(obj, "_name") on its own
    return {n for n in owned if n.startswith("_")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_reaches(package: str, folder: Path) -> list[str]:
    modules = _modules(package, folder)
    known = set(modules)
    problems = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        owned = _owned_private_names(tree)
        for target, name, line in _imports(module, path, known):
            if name and _private(name) and target != module:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {target}.{name}")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not _private(node.attr):
                continue
            if node.attr.endswith("_") or node.attr in STDLIB_PRIVATE:
                continue  # sunder names (enum's _value_), documented stdlib escapes
            if isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}:
                continue
            if node.attr in owned:
                continue
            problems.append(
                f"{path.relative_to(ROOT)}:{node.lineno} reaches into "
                f"{ast.unparse(node.value)}.{node.attr}"
            )
    return problems


def _explained(lines: list[str], node: ast.Import | ast.ImportFrom) -> bool:
    """Whether a comment sits on the import's lines, or above its block of imports."""
    first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
    if any("#" in lines[i] for i in range(first, last + 1)):
        return True
    i = first - 1
    while i >= 0 and lines[i].strip().startswith(("from ", "import ", "#")):
        if lines[i].strip().startswith("#"):
            return True
        i -= 1
    return False


class TestCore:
    def test_no_import_cycles(self) -> None:
        """No modules of core/conveyor import each other in a circle, counting TYPE_CHECKING
        and function-local imports."""
        edges, _ = _graph("conveyor", CORE)
        assert _cycles(edges) == []

    def test_no_reaching_into_private_names(self) -> None:
        """No module of core/conveyor imports or reads another module's private names."""
        assert _private_reaches("conveyor", CORE) == []

    def test_function_local_imports_say_what_they_defer(self) -> None:
        """Every function-local import of core/conveyor carries a comment saying what it
        defers (a heavy import, discovery kept light), on its line or the line above."""
        missing = []
        for path in sorted(CORE.rglob("*.py")):
            lines = path.read_text().splitlines()
            for node in ast.walk(ast.parse("\n".join(lines))):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom) and not _explained(
                        lines, inner
                    ):
                        missing.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
        assert missing == []


@pytest.mark.parametrize("package", sorted(PLUGIN_PACKAGES))
def test_plugin_has_no_import_cycles(package: str) -> None:
    """No modules of a plugin package import each other in a circle."""
    edges, _ = _graph(package, PLUGIN_PACKAGES[package])
    assert _cycles(edges) == []


def test_no_module_is_over_the_limit() -> None:
    """No module of core/ or plugins/ is over 400 lines."""
    long = []
    for folder in [CORE, *PLUGIN_PACKAGES.values()]:
        for path in sorted(folder.rglob("*.py")):
            count = len(path.read_text().splitlines())
            if count > MAX_LINES:
                long.append(f"{path.relative_to(ROOT)}: {count} lines")
    assert long == []


def test_the_checker_sees_a_cycle_and_a_private_reach(tmp_path: Path) -> None:
    """The checks above can fail: a two-module cycle through a TYPE_CHECKING import, and a
    read of another module's private attribute, are both reported."""
    pkg = tmp_path / "demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from demo.b import B\n"
    )
    (pkg / "b.py").write_text(
        "from demo import a\n\nclass B:\n    def f(self, x):\n        return x._hidden\n"
    )
    edges, _ = _graph("demo", pkg)
    assert _cycles(edges) == [["demo.a", "demo.b"]]
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert _private_reaches("demo", pkg) == ["demo/b.py:5 reaches into x._hidden"]
    finally:
        ROOT = saved
