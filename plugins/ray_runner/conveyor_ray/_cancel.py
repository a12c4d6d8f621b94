"""
Cancelling Ray tasks: the handle of a run handed to Ray, ``ray.cancel``, and the kill of its
worker (``force=True``) when a task has not stopped within the grace after its cancel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from conveyor.runners import Attempt

__all__ = ["Handle", "cancel_leftovers", "cancel_task", "kill_if_running", "kill_leftovers"]

logger = logging.getLogger("conveyor.ray")

# A stopping runner waits for its cancelled tasks in slices this long, so signals get through.
_STOP_SLICE = 0.1


class Handle:
    """The Ray side of one attempt: its two return refs, and what cancel asked for."""

    __slots__ = ("cancel_requested", "force_at", "outcome", "value")

    def __init__(self) -> None:
        self.outcome: Any = None
        self.value: Any = None
        self.cancel_requested = False
        self.force_at: float | None = None


def cancel_task(ray: Any, ref: Any, *, force: bool, name: str) -> None:
    """``ray.cancel`` the task of ``ref`` (run ``name``); if Ray refuses, log it."""
    try:
        ray.cancel(ref, force=force)
    except Exception:
        logger.debug("ray.cancel(force=%s) of %s raised.", force, name, exc_info=True)


def kill_if_running(ray: Any, name: str, ref: Any, grace: float) -> None:
    """Kill the worker of run ``name`` unless its task has finished: ``grace`` is over."""
    try:
        ready, _ = ray.wait([ref], timeout=0, fetch_local=False)
    except BaseException:
        ready = []
    if not ready:
        logger.info(
            "%s did not stop within %g s of its cancel; killing its Ray worker.", name, grace
        )
        cancel_task(ray, ref, force=True, name=name)


def cancel_leftovers(ray: Any, left: Sequence[tuple[Attempt, Handle]], grace: float) -> None:
    """
    Cancel the runs ``left`` in flight, and kill what does not stop within ``grace`` seconds;
    nothing if Ray is shut down.
    """
    refs = [h.outcome for _a, h in left if h.outcome is not None]
    if not refs or not ray.is_initialized():
        return
    for attempt, handle in left:
        if handle.outcome is not None and not handle.cancel_requested:
            handle.cancel_requested = True
            cancel_task(ray, handle.outcome, force=False, name=attempt.name)
    # Wait in short slices: a signal's handler runs only between them (ray.wait blocks in
    # C++), so a second Ctrl-C during the grace period interrupts the stop at once.
    deadline = time.monotonic() + grace
    pending = refs
    while pending and (remaining := deadline - time.monotonic()) > 0:
        try:
            _ready, pending = ray.wait(
                pending,
                num_returns=len(pending),
                timeout=min(remaining, _STOP_SLICE),
                fetch_local=False,
            )
        except Exception:  # the cluster went away meanwhile: nothing left to cancel
            return
    for ref in pending:
        cancel_task(ray, ref, force=True, name="a stopped run")


def kill_leftovers(ray: Any, left: Sequence[tuple[Attempt, Handle]]) -> None:
    """Kill the workers of the runs ``left`` in flight at once, without waiting for them."""
    for _attempt, handle in left:
        if handle.outcome is not None:
            cancel_task(ray, handle.outcome, force=True, name="a stopped run")
