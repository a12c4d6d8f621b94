"""
The built-in plugin: registers ``sequential``, ``concurrent`` and ``processes`` exactly as
external plugins do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.plugins.hookspecs import hookimpl
from conveyor.runners import ConcurrentRunner, SequentialRunner
from conveyor.runners.processes import ProcessesRunner

if TYPE_CHECKING:
    from conveyor.plugins.registry import RunnerRegistry

__all__ = ["conveyor_register_runners"]


@hookimpl
def conveyor_register_runners(registry: RunnerRegistry) -> None:
    """Register ``sequential``, ``concurrent`` and ``processes``."""
    registry.add(SequentialRunner)
    registry.add(ConcurrentRunner)
    registry.add(ProcessesRunner)
