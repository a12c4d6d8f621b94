"""
Processes on this machine, through psutil (a dependency of ``distributed``): whether a PID is
one this process started, and killing one on any platform.
"""

from __future__ import annotations

import logging

__all__ = ["is_descendant", "kill"]

logger = logging.getLogger("conveyor.dask")


def is_descendant(pid: int) -> bool:
    """Whether ``pid`` is a child of this process, or a child's child."""
    import psutil  # type: ignore[import-untyped]  # defers psutil until a worker is stopped

    try:
        return any(child.pid == pid for child in psutil.Process().children(recursive=True))
    except Exception:
        return False


def kill(pid: int) -> bool:
    """Kill ``pid`` at once (SIGKILL, or TerminateProcess on Windows); whether that was done."""
    import psutil  # defers psutil until a process is killed

    try:
        psutil.Process(pid).kill()
    except psutil.Error:
        logger.debug("Could not kill process %s.", pid, exc_info=True)
        return False
    return True
