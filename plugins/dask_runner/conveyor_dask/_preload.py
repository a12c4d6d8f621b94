"""
A Dask worker preload for the clusters the runner starts: the worker ignores SIGINT.

A terminal's Ctrl-C goes to the whole process group, worker processes included; the driver
owns their lifetime and stops them on its way out, so a worker that died of the same SIGINT
would only leave its nanny restarting it while the driver waits for it to retire.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["dask_setup"]


def dask_setup(worker: Any) -> None:
    """Ignore SIGINT in this worker process (called by Dask as the worker starts)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
