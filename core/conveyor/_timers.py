"""
One daemon thread that runs callbacks at deadlines (timeouts, retry delays).

A timeout must not cost a thread per run, and waiting must not poll: the thread sleeps on a
condition until the earliest deadline or until an earlier one is added.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("conveyor")


class TimerHandle:
    """A scheduled call; :meth:`cancel` stops it from running if it has not run yet."""

    __slots__ = ("args", "cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the call from running; a no-op if it already ran."""
        self.cancelled = True
        self.fn = _noop
        self.args = ()


def _noop(*_: Any) -> None:
    return None


class _TimerThread:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(time.monotonic() + delay, fn, args)
        with self._cond:
            heapq.heappush(self._heap, (handle.when, next(self._counter), handle))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="conveyor-timers", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is handle:
                self._cond.notify()
        return handle

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    # Drop cancelled handles so a long-lived process does not keep them.
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        handle = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(delay)
            fn, args = handle.fn, handle.args
            handle.cancel()
            try:
                fn(*args)
            except BaseException:
                logger.exception("A conveyor timer callback raised; continuing.")


_TIMERS = _TimerThread()


def call_later(delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
    """Run ``fn(*args)`` on the timer thread after ``delay`` seconds."""
    return _TIMERS.call_later(delay, fn, *args)
