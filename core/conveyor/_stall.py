"""
A word when a flow waits on task runs that nothing reports about: a runner that lost its runs
would otherwise make the flow wait forever in silence.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable

__all__ = ["STALL_ENV", "StallWatch"]

STALL_ENV = "CONVEYOR_STALL_WARNING_SECONDS"
DEFAULT_STALL_SECONDS = 300.0

logger = logging.getLogger("conveyor")


def _seconds_from_env() -> float | None:
    raw = os.environ.get(STALL_ENV, "").strip()
    if not raw:
        return DEFAULT_STALL_SECONDS
    try:
        value = float(raw)
    except ValueError:
        logger.warning(
            "%s=%r is not a number of seconds; using %s.", STALL_ENV, raw, DEFAULT_STALL_SECONDS
        )
        return DEFAULT_STALL_SECONDS
    return value if value > 0 and math.isfinite(value) else None  # 0 turns the warning off


class StallWatch:
    """
    When the last task-run state change was, and a warning each time the flow has waited
    ``seconds`` (``CONVEYOR_STALL_WARNING_SECONDS``, default 300, 0 for never) with none.
    """

    __slots__ = ("last", "seconds", "warned")

    def __init__(self) -> None:
        self.seconds = _seconds_from_env()
        self.last = time.monotonic()
        self.warned = self.last

    def changed(self) -> None:
        """A task run changed state."""
        self.last = time.monotonic()

    def interval(self) -> float | None:
        """How long a wait may block before :meth:`check` should look (None: forever)."""
        return self.seconds

    def check(self, flow_run: str, waiting: Callable[[], str]) -> None:
        """Warn if nothing changed for ``seconds``; ``waiting()`` names the runs waited on."""
        if self.seconds is None:
            return
        now = time.monotonic()
        quiet = now - self.last
        if quiet < self.seconds or now - self.warned < self.seconds:
            return
        self.warned = now
        logger.warning(
            "Flow run %s: no task run changed state for %.0f s; still waiting for %s. Its "
            "runner may have lost them (set %s=0 to silence this).",
            flow_run,
            quiet,
            waiting(),
            STALL_ENV,
        )
