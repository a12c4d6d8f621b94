"""
The built-in plugin: registers ``sequential`` and ``concurrent`` exactly as external plugins do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.plugins.hookspecs import hookimpl
from conveyor.runners.concurrent import ConcurrentRunner
from conveyor.runners.sequential import SequentialRunner

if TYPE_CHECKING:
    from conveyor.plugins.registry import RunnerRegistry

__all__ = ["conveyor_register_runners"]


@hookimpl
def conveyor_register_runners(registry: RunnerRegistry) -> None:
    """Register the core's runners."""
    registry.add(SequentialRunner)
    registry.add(ConcurrentRunner)
