"""Discovery is cheap: the core never imports distributed or ray until a runner starts."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import conveyor

CORE = Path(conveyor.__file__).parent
HEAVY = ("distributed", "dask", "ray")

CHECK = """
import sys, runpy
{body}
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print(heavy)
"""


def _heavy_after(body: str) -> str:
    code = CHECK.format(body=body, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "body",
    [
        "import conveyor",
        "from conveyor.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
        "from conveyor.cli import main\nmain(['runners'])",
        "from conveyor.cli import main\nmain(['runners', '--json'])",
    ],
    ids=["import", "help", "runners", "runners-json"],
)
def test_discovery_imports_nothing_heavy(body: str) -> None:
    """import conveyor, conveyor --help and conveyor runners import no distributed or ray."""
    assert _heavy_after(body) == "[]"


def test_core_sources_never_import_backends() -> None:
    """No module of the core distribution imports dask, distributed or ray."""
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in HEAVY]
    assert offenders == []


def test_public_modules_have_complete_all() -> None:
    """Every public module's __all__ names exactly its public, non-imported definitions."""
    import importlib
    import inspect
    import pkgutil

    import conveyor

    modules = ["conveyor"] + [
        info.name
        for info in pkgutil.walk_packages(conveyor.__path__, "conveyor.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    packages = {
        info.name for info in pkgutil.walk_packages(conveyor.__path__, "conveyor.") if info.ispkg
    }
    for name in modules:
        module = importlib.import_module(name)
        exported = set(module.__all__)
        for item in exported:
            assert hasattr(module, item), f"{name}.__all__ names missing {item}"
        if name == "conveyor" or name in packages:
            continue  # re-exporting packages
        defined = {
            n
            for n, v in vars(module).items()
            if not n.startswith("_")
            and (inspect.isclass(v) or inspect.isfunction(v))
            and getattr(v, "__module__", None) == name
        }
        assert defined <= exported, f"{name}.__all__ lacks {sorted(defined - exported)}"
