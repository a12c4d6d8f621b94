"""
The entry-point module of conveyor-dask: registers the ``dask`` runner. Imports nothing from
``distributed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor import hookimpl
from conveyor_dask.runner import DaskRunner

if TYPE_CHECKING:
    from conveyor.plugins.registry import RunnerRegistry


@hookimpl
def conveyor_register_runners(registry: RunnerRegistry) -> None:
    """Add :class:`~conveyor_dask.DaskRunner` under the name ``dask``."""
    registry.add(DaskRunner)
