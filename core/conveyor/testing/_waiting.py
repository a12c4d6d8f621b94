"""
Bounded waiting for tests: poll a condition, never sleep blindly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float = 30.0,
    *,
    what: str | None = None,
    interval: float = 0.01,
) -> T:
    """
    Call ``condition`` until it returns something truthy, for at most ``timeout`` seconds, and
    return its last value (falsy if the time ran out).

    With ``what``, running out of time raises :class:`AssertionError` saying what was awaited,
    so a test reads ``wait_until(lambda: path.exists(), 10, what="the marker file")``.

    >>> wait_until(lambda: 42, 1)
    42
    >>> wait_until(lambda: 0, 0.05, what="nothing")
    Traceback (most recent call last):
    ...
    AssertionError: timed out after 0.05 s waiting for nothing
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if not value and what is not None:
        msg = f"timed out after {timeout} s waiting for {what}"
        raise AssertionError(msg)
    return value
