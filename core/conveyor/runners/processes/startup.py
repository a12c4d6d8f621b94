"""
Whether a pool's workers got ready: what its start waits for, and when it gives up starting
more.

A worker is ready once it has run the initializer and set its memory limit. The pool's start
returns when all of them are, and raises the first problem instead: the initializer raised, the
memory limit is too low, the main script is not guarded (see
:mod:`~conveyor.runners.processes.bootstrap`), a worker died while it started. Later, when a
replacement worker cannot be started, the pool gives up after a problem that will happen again
(the initializer, the script) or after a few failures in a row.
"""

from __future__ import annotations

import threading

from conveyor.exceptions import BackendUnavailable, ConveyorError

__all__ = ["StartWatch"]

# Replacements that may fail to start in a row before the pool gives up.
MAX_FAILURES = 3


class StartWatch:
    """The start-up state of one pool of ``size`` workers."""

    def __init__(self, size: int, runner_name: str) -> None:
        self._size = size
        self._name = runner_name
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._error: ConveyorError | None = None
        self._starting = True
        self._failures = 0

    def wait(self, timeout: float) -> None:
        """Wait until every worker is ready; raise the problem that kept one from it."""
        if not self._done.wait(timeout):
            msg = (
                f"Runner {self._name!r}: its {self._size} worker processes were not ready "
                f"within {timeout:g} s; check what your main script does when it is imported."
            )
            raise BackendUnavailable(msg)
        if self._error is not None:
            raise self._error

    def ready(self, ready_workers: int) -> None:
        """A worker got ready; ``ready_workers`` are ready now."""
        with self._lock:
            self._failures = 0
            if self._starting and ready_workers >= self._size:
                self._starting = False
                self._done.set()

    def failed(self, error: ConveyorError, *, again: bool) -> bool:
        """
        A worker could not get ready because of ``error`` (``again``: it will happen to every
        worker). Returns whether the pool must stop starting workers.
        """
        with self._lock:
            if self._starting:
                self._starting = False
                self._error = error
                self._done.set()
                return True
            self._failures += 1
            return again or self._failures >= MAX_FAILURES

    @property
    def failed_to_start(self) -> bool:
        """Whether the pool's start failed."""
        return self._error is not None
