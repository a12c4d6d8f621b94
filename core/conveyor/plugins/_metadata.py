"""
The one module that reads installed distributions' metadata.

It reads ``*.dist-info`` folders on ``sys.path`` directly, as ``importlib.metadata`` does, but
only their folder names and ``entry_points.txt``: importing ``importlib.metadata`` (and the
email parser it brings) would cost more than everything else ``conveyor runners`` does.
As in ``importlib.metadata``, the first distribution of a name on ``sys.path`` wins.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, NamedTuple

GROUP = "conveyor"


class EntryPoint(NamedTuple):
    """An entry point in the ``conveyor`` group, with the distribution that declares it."""

    name: str
    value: str
    distribution: str
    version: str

    def load(self) -> Any:
        """Import the entry point's module and return the object it names."""
        module, _, attr = self.value.partition(":")
        obj: Any = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


class _Dist(NamedTuple):
    name: str
    version: str
    path: str


def _normalize(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


def _distributions() -> dict[str, _Dist]:
    """Installed distributions by normalized name: the first on sys.path wins."""
    found: dict[str, _Dist] = {}
    for entry in sys.path:
        folder = entry or "."
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if not name.endswith(".dist-info"):
                continue
            dist, _, version = name[: -len(".dist-info")].partition("-")
            key = _normalize(dist)
            if key not in found:
                found[key] = _Dist(key, version or "unknown", os.path.join(folder, name))
    return found


def _parse_group(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of ``[group]`` in an entry_points.txt."""
    pairs: list[tuple[str, str]] = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        if current == group and "=" in line:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def conveyor_entry_points() -> list[EntryPoint]:
    """The entry points in group ``conveyor``, one per (distribution, name), sorted by name."""
    found: list[EntryPoint] = []
    for dist in _distributions().values():
        try:
            with open(os.path.join(dist.path, "entry_points.txt"), encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            continue
        for name, value in _parse_group(text, GROUP):
            found.append(EntryPoint(name, value, dist.name, dist.version))
    return sorted(found, key=lambda e: (e.name, e.distribution))


def version_of(distribution: str) -> str:
    """The installed version of ``distribution``, or ``"unknown"``."""
    dist = _distributions().get(_normalize(distribution))
    return dist.version if dist is not None else "unknown"
