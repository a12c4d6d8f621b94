"""
The one module that reads installed distributions' metadata, for entry-point discovery.

conveyor does not use ``importlib.metadata``: importing it (and the email parser it brings)
would cost more than everything else ``conveyor runners`` does. This module reads what
``importlib.metadata`` would read for the same answer, and no more: the names of the
``*.dist-info`` folders in each ``sys.path`` entry, which give a distribution's name and
version (as pip and every wheel installer write them), and their ``entry_points.txt``, parsed
by ``importlib.metadata``'s rules. As in ``importlib.metadata``, the first distribution of a
name on ``sys.path`` wins. Unlike it, an ``entry_points.txt`` that is not valid UTF-8 is read
with the bad bytes replaced instead of raising, so one damaged distribution cannot stop
discovery, and legacy ``*.egg-info`` folders and zipped path entries are not searched.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

__all__ = ["GROUP", "EntryPoint", "conveyor_entry_points", "entry_points", "normalize"]

GROUP = "conveyor"
_SUFFIX = ".dist-info"
# importlib.metadata.EntryPoint.pattern: ``module[:attr.path] [extras]``.
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


class EntryPoint(NamedTuple):
    """An entry point, with the distribution (its normalized name) and version declaring it."""

    name: str
    value: str
    group: str
    distribution: str
    version: str

    def load(self) -> Any:
        """Import the entry point's module and return the object it names."""
        match = _VALUE.match(self.value)
        if match is None:
            msg = (
                f"Entry point {self.name!r} of {self.distribution} has the value "
                f"{self.value!r}; its distribution must give 'module' or 'module:attribute'."
            )
            raise ValueError(msg)
        obj: Any = importlib.import_module(match.group("module"))
        for part in filter(None, (match.group("attr") or "").split(".")):
            obj = getattr(obj, part)
        return obj


class _Dist(NamedTuple):
    name: str
    version: str
    path: str


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it: ``Conveyor_Dask`` is ``conveyor-dask``."""
    key = name.replace("_", "-").replace(".", "-").lower()
    return re.sub("-{2,}", "-", key) if "--" in key else key  # runs are rare: skip the regex


def _distributions(path: Iterable[str] | None) -> dict[str, _Dist]:
    """Installed distributions by normalized name: the first on ``path`` wins."""
    found: dict[str, _Dist] = {}
    for entry in sys.path if path is None else path:
        folder = entry or "."
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if not name.lower().endswith(_SUFFIX):
                continue
            dist, _, version = name[: -len(_SUFFIX)].partition("-")
            key = normalize(dist)
            if key not in found:
                found[key] = _Dist(key, version or "unknown", os.path.join(folder, name))
    return found


def _parse(text: str) -> Iterator[tuple[str, str, str]]:
    """
    The ``(group, name, value)`` entries of an entry_points.txt, by ``importlib.metadata``'s
    rules: stripped lines, ``#`` comments, ``[group]`` headers. A line without ``=`` (which
    ``importlib.metadata`` fails on) is skipped.
    """
    group = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line.strip("[]")
            continue
        if group is not None and "=" in line:
            name, _, value = line.partition("=")
            yield group, name.strip(), value.strip()


def _read(dist: _Dist) -> str:
    try:
        with open(os.path.join(dist.path, "entry_points.txt"), "rb") as fh:
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def entry_points(group: str, path: Iterable[str] | None = None) -> list[EntryPoint]:
    """
    The entry points in ``group`` of the distributions on ``path`` (default: ``sys.path``),
    sorted by name and distribution.
    """
    found = [
        EntryPoint(name, value, group, dist.name, dist.version)
        for dist in _distributions(path).values()
        for in_group, name, value in _parse(_read(dist))
        if in_group == group
    ]
    return sorted(found, key=lambda e: (e.name, e.distribution))


def conveyor_entry_points() -> list[EntryPoint]:
    """The entry points in group ``conveyor`` on ``sys.path``: the plugins to load."""
    return entry_points(GROUP)
