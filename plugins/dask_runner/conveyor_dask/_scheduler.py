"""
What runs on the Dask scheduler: the plugin that stops Dask from recomputing a completed run,
and its installation by the driver.

``has_guard`` is sent to the scheduler by reference (``client.run_on_scheduler``), so the
scheduler imports this module; the plugin class is built on first use, so importing it imports
nothing from ``distributed``.
"""

from __future__ import annotations

import logging
from typing import Any

from conveyor_dask import _internals
from conveyor_dask._events import LOST_RESULTS_TOPIC, is_run_key

__all__ = ["GUARD_NAME", "guard_plugin", "has_guard", "install_guard"]

logger = logging.getLogger("conveyor.dask")

GUARD_NAME = "conveyor-lost-result-guard"


def has_guard(dask_scheduler: Any) -> bool:
    """Whether the scheduler has conveyor's guard plugin (for ``client.run_on_scheduler``)."""
    return _internals.has_plugin(dask_scheduler, GUARD_NAME)


def guard_plugin() -> Any:
    """A scheduler plugin that turns a lost completed conveyor result into a lost key."""
    from distributed import SchedulerPlugin  # defers importing distributed

    class LostResultGuard(SchedulerPlugin):
        name = GUARD_NAME

        def __init__(self) -> None:
            self.scheduler: Any = None

        async def start(self, scheduler: Any) -> None:
            self.scheduler = scheduler

        def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
            # memory -> released happens when the last copy of a result is lost (worker death
            # or restart); Dask would then recompute it, running the task body again. Mark it
            # as having lost its inputs instead, so the scheduler forgets it and the driver's
            # future reports it lost.
            if start != "memory" or finish != "released":
                return
            if not is_run_key(key):
                return
            scheduler = self.scheduler
            if scheduler is not None and _internals.forbid_recompute(scheduler, key):
                # The driver may not have heard yet that the run finished: tell it.
                scheduler.log_event(LOST_RESULTS_TOPIC, key)

    return LostResultGuard()


def install_guard(client: Any) -> bool:
    """Register the guard on the client's scheduler unless it is there; whether it is there."""
    try:
        if not client.run_on_scheduler(has_guard):
            client.register_plugin(guard_plugin(), name=GUARD_NAME)
    except Exception as exc:
        logger.warning(
            "Could not install conveyor's scheduler plugin (%s: %s); if a worker dies, Dask "
            "may recompute completed runs whose results it held.",
            type(exc).__name__,
            exc,
        )
        return False
    return True
