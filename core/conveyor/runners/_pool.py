"""
A bounded pool of daemon worker threads whose workers give their slot back while they wait.

A task that blocks on another run's future (``future.result()`` inside a task) calls
:meth:`WorkerPool.secede` through the future, so the pool may start another worker for queued
work, and :meth:`WorkerPool.rejoin` when it resumes; the pool then shrinks back to
``max_workers`` as workers finish. This is how a pool of one worker runs a task that waits on
another task without deadlocking, the way Dask's ``secede``/``rejoin`` does.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from conveyor._blocking import install_seceder

_STOP = None


class WorkerPool:
    """Run ``handler(item)`` for queued items on at most ``max_workers`` non-waiting daemon threads."""

    def __init__(self, max_workers: int, name: str, handler: Callable[[Any], object]) -> None:
        self._max = max_workers
        self._name = name
        self._handler = handler
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._active = 0  # workers that count against max_workers
        self._threads: dict[threading.Thread, object] = {}
        self._closed = False
        self._seq = 0

    def submit(self, item: Any) -> None:
        """Queue ``item`` for the handler; raises RuntimeError once the pool is shut down."""
        if self._closed:
            msg = f"Pool {self._name!r} is shut down; it takes no more work."
            raise RuntimeError(msg)
        self._queue.put(item)
        # Workers start on demand up to max_workers and then stay; no idle bookkeeping on the
        # hot path (ThreadPoolExecutor's idle semaphore costs more than it saves here).
        if self._active < self._max:
            with self._lock:
                if self._active < self._max:
                    self._active += 1
                    self._spawn()

    def _spawn(self) -> None:
        self._seq += 1
        thread = threading.Thread(target=self._work, name=f"{self._name}-{self._seq}", daemon=True)
        thread.start()
        self._threads[thread] = None

    def _work(self) -> None:
        install_seceder(self)
        me = threading.current_thread()
        handler = self._handler
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    self._queue.put(_STOP)  # let the next worker see it too
                    with self._lock:
                        self._active -= 1
                    return
                try:
                    handler(item)
                except BaseException:
                    pass
                if self._active > self._max:  # grew while a worker waited; shrink back
                    with self._lock:
                        if self._active > self._max:
                            self._active -= 1
                            return
        finally:
            with self._lock:
                self._threads.pop(me, None)

    def secede(self) -> None:
        """The calling worker blocks: free its slot, and start a worker if work is queued."""
        with self._lock:
            self._active -= 1
            if not self._closed and not self._queue.empty() and self._active < self._max:
                self._active += 1
                self._spawn()

    def rejoin(self) -> None:
        """The calling worker resumes: take its slot back (the pool may exceed its size briefly)."""
        with self._lock:
            self._active += 1

    def shutdown(
        self, timeout: float = 5.0, abandoned: Callable[[threading.Thread], bool] = lambda t: False
    ) -> None:
        """
        Stop taking work and let workers exit; join those not busy with abandoned work, for at
        most ``timeout`` seconds in all.
        """
        self._closed = True
        self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is threading.current_thread() or thread.ident is None or abandoned(thread):
                continue  # ourselves, never started (an interrupt hit _spawn), or stuck
            thread.join(max(0.0, deadline - time.monotonic()))
