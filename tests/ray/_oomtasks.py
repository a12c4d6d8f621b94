"""
Tasks for the out-of-memory test, in a module Ray workers can import (the cluster's PYTHONPATH
has this folder).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from conveyor import task
from conveyor.testing._tasks import bump

__all__ = ["CHUNK", "hog", "innocent", "square", "wait_for_file"]

# The hog grows in steps of this size.
CHUNK = 64 * 2**20


def wait_for_file(path: str, limit: float) -> bool:
    """Whether ``path`` exists within ``limit`` seconds (polled)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return os.path.exists(path)


@task
def innocent(k: int, runs: str, started: str, release: str) -> int:
    """Counts its run, says it started, then waits (bounded) until the test releases it."""
    bump(runs)
    Path(started).write_text(str(os.getpid()), encoding="utf-8")
    if not wait_for_file(release, 120.0):
        raise TimeoutError(f"innocent {k} was never released")
    return k * k


@task
def hog(runs: str, cap_bytes: int, hold_seconds: float) -> int:
    """
    Counts its run and notes when it started, then grows by written (so resident) chunks up
    to ``cap_bytes`` and holds them; Ray's memory monitor should kill it on the way. Returns
    the chunks it held if it survived.
    """
    bump(runs)
    Path(f"{runs}.started").write_text(repr(time.time()), encoding="utf-8")
    held: list[bytes] = []
    while len(held) * CHUNK < cap_bytes:
        held.append(b"\x01" * CHUNK)  # memset: every page is touched, so it counts as used
        time.sleep(0.02)  # pace the growth, so the monitor sees the crossing before the cap
    deadline = time.monotonic() + hold_seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return len(held)


@task
def square(k: int) -> int:
    return k * k
