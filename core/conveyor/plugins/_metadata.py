"""
The one module that reads installed distributions' metadata.
"""

from __future__ import annotations

from typing import NamedTuple

GROUP = "conveyor"


class EntryPoint(NamedTuple):
    """An entry point in the ``conveyor`` group, with the distribution that declares it."""

    name: str
    value: str
    distribution: str
    version: str
    load: object  # a zero-argument callable that imports and returns the plugin


def conveyor_entry_points() -> list[EntryPoint]:
    """The entry points in group ``conveyor``, one per (distribution, name), sorted by name."""
    from importlib import metadata

    found: dict[tuple[str, str], EntryPoint] = {}
    for ep in metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "unknown"
        version = dist.version if dist is not None else "unknown"
        found.setdefault(
            (dist_name, ep.name), EntryPoint(ep.name, ep.value, dist_name, version, ep.load)
        )
    return sorted(found.values(), key=lambda e: (e.name, e.distribution))


def version_of(distribution: str) -> str:
    """The installed version of ``distribution``, or ``"unknown"``."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
