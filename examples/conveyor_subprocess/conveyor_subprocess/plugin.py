"""
The conveyor plugin: the entry point ``subprocess = "conveyor_subprocess.plugin"`` names this
module, and conveyor calls its hook when it loads plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import conveyor
from conveyor_subprocess.runner import SubprocessRunner

if TYPE_CHECKING:
    from conveyor.plugins import RunnerRegistry


@conveyor.hookimpl
def conveyor_register_runners(registry: RunnerRegistry) -> None:
    """Register the ``subprocess`` runner."""
    registry.add(SubprocessRunner)
