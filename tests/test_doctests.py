"""The examples in docstrings run: every module's doctests pass."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import conveyor


def _modules() -> list[str]:
    names = ["conveyor"]
    names += [m.name for m in pkgutil.walk_packages(conveyor.__path__, "conveyor.")]
    for plugin in ("conveyor_dask", "conveyor_ray"):
        try:
            package = importlib.import_module(plugin)
        except ImportError:
            continue
        names += [plugin] + [m.name for m in pkgutil.walk_packages(package.__path__, plugin + ".")]
    return sorted(n for n in names if not n.endswith("__main__"))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str) -> None:
    """The module's docstring examples give the output they show."""
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
