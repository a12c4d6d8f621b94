"""
``log_prints``: ``print()`` inside a task (or a flow body) becomes a log record.

A task with ``log_prints=True`` runs wrapped in :class:`PrintsToLog` (or
:class:`AsyncPrintsToLog`), a picklable callable that travels to workers in place of the
function, so every runner, remote ones included, gets it for free. While it runs, a context
variable says so, and ``builtins.print`` (replaced once per process, on first use, by a function
that passes every other call straight through) turns what it would have written to stdout or
stderr into a record of the ``conveyor.prints`` logger: INFO for stdout, WARNING for stderr. The
record carries the run's names like any other, and remote workers ship it back with the run's
outcome.
"""

from __future__ import annotations

import builtins
import contextvars
import functools
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["PRINTS_LOGGER", "AsyncPrintsToLog", "PrintsToLog", "capturing", "wrap"]

PRINTS_LOGGER = "conveyor.prints"

_logger = logging.getLogger(PRINTS_LOGGER)
_active: contextvars.ContextVar[bool] = contextvars.ContextVar("conveyor_log_prints", default=False)
_lock = threading.Lock()
_original: list[Callable[..., None]] = []


def _print(
    *values: object,
    sep: str | None = " ",
    end: str | None = "\n",
    file: Any = None,
    flush: bool = False,
) -> None:
    if not _active.get() or (
        file is not None and file is not sys.stdout and file is not sys.stderr
    ):
        _original[0](*values, sep=sep, end=end, file=file, flush=flush)
        return
    text = (" " if sep is None else sep).join(str(v) for v in values)
    if text:
        _logger.log(logging.WARNING if file is sys.stderr else logging.INFO, "%s", text)


def _install() -> None:
    """Replace ``builtins.print`` once in this process (the replacement passes through)."""
    if _original:
        return
    with _lock:
        if not _original:
            _original.append(builtins.print)
            builtins.print = _print


@contextmanager
def capturing(active: bool = True) -> Iterator[None]:
    """Inside the block (this context only), ``print()`` becomes a log record (or not)."""
    if active:
        _install()
    token = _active.set(active)
    try:
        yield
    finally:
        _active.reset(token)


class PrintsToLog:
    """
    ``fn``, whose prints become log records while it runs (or, with ``active=False``, stay
    prints even inside a flow that logs them). It pickles as its ``owner`` (the task) does, and
    is made again from it on the worker.
    """

    def __init__(self, fn: Callable[..., Any], owner: Any = None, active: bool = True) -> None:
        self.fn = fn
        self.owner = owner
        self.active = active
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<log_prints={self.active} {getattr(self.fn, '__qualname__', self.fn)!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        if self.owner is None:
            return (type(self), (self.fn, None, self.active))
        return (_remade, (self.owner, self.active))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with capturing(self.active):
            return self.fn(*args, **kwargs)


class AsyncPrintsToLog(PrintsToLog):
    """:class:`PrintsToLog` for a coroutine function."""

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with capturing(self.active):
            return await self.fn(*args, **kwargs)


def _remade(owner: Any, active: bool) -> Any:
    return owner.printing_fn(active)


def wrap(
    fn: Callable[..., Any], is_async: bool, owner: Any = None, active: bool = True
) -> PrintsToLog:
    """``fn`` wrapped so that its prints become log records (or, not ``active``, stay prints)."""
    kind = AsyncPrintsToLog if is_async else PrintsToLog
    return kind(fn, owner, active)
