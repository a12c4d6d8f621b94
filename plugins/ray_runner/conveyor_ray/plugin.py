"""
The entry-point module of conveyor-ray: registers the ``ray`` runner. Imports nothing from
``ray``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor import hookimpl
from conveyor_ray.runner import RayRunner

if TYPE_CHECKING:
    from conveyor.plugins.registry import RunnerRegistry


@hookimpl
def conveyor_register_runners(registry: RunnerRegistry) -> None:
    """Add :class:`~conveyor_ray.RayRunner` under the name ``ray``."""
    registry.add(RayRunner)
