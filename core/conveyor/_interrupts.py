"""
Telling a real Ctrl-C from a task that raises KeyboardInterrupt itself.

Python raises KeyboardInterrupt for SIGINT in the main thread, wherever it is, so a sync task
running there (the ``sequential`` runner) cannot tell from the exception alone whether the
program was interrupted or the task raised it. While a flow runs in the main thread, conveyor's
SIGINT handler counts each signal and then raises KeyboardInterrupt exactly as Python's own
does; an attempt that sees the count move while it ran knows the interrupt was real.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from conveyor.exceptions import Terminated

__all__ = [
    "counting",
    "interrupts",
    "is_real_interrupt",
    "note_interrupt",
    "watched",
    "watching_sigint",
]

_count = 0
_counting: set[Any] = set()


def interrupts() -> int:
    """How many SIGINTs (and SIGTERMs the CLI turned into exceptions) this process has seen."""
    return _count


def note_interrupt() -> None:
    """Count one interrupt: called by every handler that raises for a signal."""
    global _count
    _count += 1


def counting(handler: Callable[[int, FrameType | None], Any]) -> None:
    """Declare that ``handler`` calls :func:`note_interrupt` before it raises."""
    _counting.add(handler)


def watched() -> bool:
    """Whether the SIGINT handler in place counts interrupts."""
    return signal.getsignal(signal.SIGINT) in _counting


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    note_interrupt()
    raise KeyboardInterrupt


counting(_on_sigint)


@contextmanager
def watching_sigint() -> Iterator[None]:
    """
    In the main thread, while SIGINT has Python's default handler, count Ctrl-Cs (and raise
    KeyboardInterrupt for them as before); elsewhere, or under another handler, do nothing.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is _on_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def is_real_interrupt(exc: BaseException, before: int) -> bool:
    """
    Whether ``exc``, raised while a call ran in this thread, is the program being interrupted
    (Ctrl-C, or SIGTERM through the CLI) rather than the call's own doing. ``before`` is
    :func:`interrupts` when the call started.
    """
    if isinstance(exc, Terminated):
        return True
    if not isinstance(exc, KeyboardInterrupt):
        return False
    if _count != before:
        return True
    # Unwatched (a handler of the program's own): in the main thread it may be a Ctrl-C.
    return not watched() and threading.current_thread() is threading.main_thread()
