"""
The built-in plugin: registers ``sequential`` and ``concurrent`` exactly as external plugins do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.plugins.hookspecs import hookimpl
from conveyor.runners import ConcurrentRunner, SequentialRunner

if TYPE_CHECKING:
    from conveyor.plugins.registry import RunnerRegistry

__all__ = ["conveyor_register_runners"]


@hookimpl
def conveyor_register_runners(registry: RunnerRegistry) -> None:
    """Register ``sequential`` and ``concurrent``."""
    registry.add(SequentialRunner)
    registry.add(ConcurrentRunner)
