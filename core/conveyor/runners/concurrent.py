"""
The ``concurrent`` runner: sync tasks on a bounded thread pool, async tasks on one event loop.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import attrs

from conveyor import validators
from conveyor.runners._pool import WorkerPool
from conveyor.runners.attempt import Attempt
from conveyor.runners.protocol import Capabilities, ConcurrencyType, Runner

if TYPE_CHECKING:
    from conveyor.runners._loop import LoopThread

__all__ = ["ConcurrentRunner"]


def _default_max_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


@attrs.define(kw_only=True, eq=True)
class ConcurrentRunner(Runner):
    """
    Runs sync tasks on a pool of at most ``max_workers`` threads, and async tasks on one shared
    event loop thread, so ten thousand awaiting tasks cost no extra threads.

    A task that waits on another run's future gives its thread back while it waits, so a
    bounded pool never deadlocks on dependencies. Async tasks are really stopped at their
    timeout and on cancel; a sync task that is already running cannot be interrupted (it is
    marked TimedOut or Cancelled on time, and its thread is abandoned).
    """

    name = "concurrent"
    concurrency = ConcurrencyType.CONCURRENT
    capabilities = Capabilities()

    max_workers: int = attrs.field(
        factory=_default_max_workers,
        validator=validators.whole_number(minimum=1, hint="the default is min(32, CPUs + 4)"),
    )

    _pool: WorkerPool | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _loop: LoopThread | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, eq=False, repr=False)
    _running: dict[threading.Thread, Attempt] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )

    def on_start(self) -> None:
        self._pool = WorkerPool(self.max_workers, "conveyor-worker", self._run)

    def on_stop(self) -> None:
        pool, self._pool = self._pool, None
        with self._lock:
            loop, self._loop = self._loop, None
        if pool is not None:
            pool.shutdown(abandoned=self._is_abandoned)
        if loop is not None:
            loop.close()

    def _is_abandoned(self, thread: threading.Thread) -> bool:
        with self._lock:
            attempt = self._running.get(thread)
        return attempt is not None and attempt.finished

    def execute(self, attempt: Attempt) -> None:
        if attempt.is_async:
            with self._lock:
                if self._loop is None:
                    from conveyor.runners._loop import LoopThread  # deferred: it imports asyncio

                    self._loop = LoopThread("conveyor-async-loop")
                loop = self._loop
            attempt.handle = loop.submit(attempt.call_async())
            return
        assert self._pool is not None
        self._pool.submit(attempt)

    def _run(self, attempt: Attempt) -> None:
        me = threading.current_thread()
        with self._lock:
            if attempt.finished:  # cancelled while queued: never runs
                return
            attempt.handle = me
            self._running[me] = attempt
        try:
            attempt.call()
        finally:
            with self._lock:
                self._running.pop(me, None)

    def cancel(self, attempt: Attempt) -> bool:
        if attempt.is_async:
            handle = attempt.handle
            if handle is not None:
                handle.cancel()
            return True
        with self._lock:
            return attempt.handle is None  # still queued: it will be skipped
