"""
The hook a bounded worker pool installs in its threads, so that a task that blocks on another
run's future gives its slot back while it waits (and a bounded pool never deadlocks on
dependencies).
"""

from __future__ import annotations

import threading
from typing import Protocol

__all__ = ["Seceder", "current_seceder", "install_seceder"]


class Seceder(Protocol):
    """What a pool offers its threads: leave the pool while blocked, then come back."""

    def secede(self) -> None: ...

    def rejoin(self) -> None: ...


_local = threading.local()


def install_seceder(seceder: Seceder | None) -> None:
    """Make ``seceder`` this thread's pool (None: this thread belongs to no pool)."""
    _local.seceder = seceder


def current_seceder() -> Seceder | None:
    """
    This thread's pool, or None. A blocking wait calls its ``secede()`` before and ``rejoin()``
    after, so the pool may start another worker for queued work meanwhile.
    """
    seceder: Seceder | None = getattr(_local, "seceder", None)
    return seceder
