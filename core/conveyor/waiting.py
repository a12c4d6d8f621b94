"""
Waiting for many futures: :func:`wait` and :func:`as_completed`, the exact equivalents of the
standard library's, and :func:`gather`, which fetches values that live on a backend together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

from conveyor.futures import RunFuture
from conveyor.states import FINAL_TYPES, ResultRef

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "DoneAndNotDone",
    "as_completed",
    "gather",
    "wait",
]

T = TypeVar("T")

FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"
ALL_COMPLETED = "ALL_COMPLETED"


class DoneAndNotDone(NamedTuple):
    """What :func:`wait` returns: the futures that are done, and those that are not."""

    done: set[RunFuture[Any]]
    not_done: set[RunFuture[Any]]


def _failed(f: RunFuture[Any]) -> bool:
    state = f.peek()
    return state.type in FINAL_TYPES and not state.is_completed()


def wait(
    futures: Iterable[RunFuture[Any]],
    timeout: float | None = None,
    return_when: str = ALL_COMPLETED,
) -> DoneAndNotDone:
    """
    Wait for futures, exactly as :func:`concurrent.futures.wait` does.

    ``return_when`` is :data:`FIRST_COMPLETED`, :data:`FIRST_EXCEPTION` (any final state other
    than COMPLETED) or :data:`ALL_COMPLETED`. Returns ``(done, not_done)``.
    """
    if return_when not in (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED):
        msg = f"return_when={return_when!r} is not one of FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED."
        raise ValueError(msg)
    fs = set(futures)
    cond = threading.Condition()
    finished: list[RunFuture[Any]] = []

    def on_done(f: RunFuture[Any]) -> None:
        with cond:
            finished.append(f)
            cond.notify()

    pending = set()
    for f in fs:
        f.mark_observed()
        if f.add_callback(on_done):
            pending.add(f)

    def satisfied() -> bool:
        if return_when == ALL_COMPLETED or not pending:
            return not pending
        if return_when == FIRST_COMPLETED:
            return len(pending) < len(fs)
        return any(_failed(f) for f in fs - pending)

    deadline = None if timeout is None else time.monotonic() + timeout
    with cond:
        while True:
            pending.difference_update(finished)
            finished.clear()
            if satisfied():
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            cond.wait(remaining)
    for f in pending:
        f.remove_callback(on_done)
    return DoneAndNotDone(fs - pending, pending)


def gather(
    futures: Iterable[RunFuture[Any]], timeout: float | None = None, raise_on_failure: bool = True
) -> list[Any]:
    """
    Wait for every future and return their values, in order.

    Like ``[f.result() for f in futures]``, but values that live on a backend (a Dask worker,
    the Ray object store) are fetched together, in one round trip per backend instead of one
    per run. Raises the first failed run's exception (in order), or with
    ``raise_on_failure=False`` puts the exception in its place. Raises :class:`TimeoutError`
    if some run is not final after ``timeout`` seconds.
    """
    fs = list(futures)
    _, not_done = wait(fs, timeout=timeout)
    if not_done:
        msg = f"{len(not_done)} (of {len(fs)}) runs did not finish within {timeout} s."
        raise TimeoutError(msg)
    values: list[Any] = [None] * len(fs)
    failed: list[int] = []
    remote: dict[type[ResultRef[Any]], list[int]] = {}
    for i, f in enumerate(fs):
        state = f.peek()
        if not state.is_completed():
            values[i] = state.exception()
            failed.append(i)
        elif isinstance(state.data, ResultRef):
            remote.setdefault(type(state.data), []).append(i)
        else:
            values[i] = state.data
    for cls, indexes in remote.items():
        fetched = cls.get_many([fs[i].peek().data for i in indexes])
        for i, value in zip(indexes, fetched, strict=True):
            values[i] = value
            if isinstance(value, BaseException):
                failed.append(i)
    if raise_on_failure and failed:
        error = values[min(failed)]
        assert isinstance(error, BaseException)
        raise error
    return values


def as_completed(
    futures: Iterable[RunFuture[T]], timeout: float | None = None
) -> Iterator[RunFuture[T]]:
    """
    Yield futures as they finish, exactly as :func:`concurrent.futures.as_completed` does.

    Raises :class:`TimeoutError` if some are still not final after ``timeout`` seconds.
    """
    fs = set(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    cond = threading.Condition()
    finished: list[RunFuture[T]] = []

    def on_done(f: RunFuture[T]) -> None:
        with cond:
            finished.append(f)
            cond.notify()

    pending: set[RunFuture[T]] = set()
    ready: list[RunFuture[T]] = []
    for f in fs:
        f.mark_observed()
        if f.add_callback(on_done):
            pending.add(f)
        else:
            ready.append(f)
    try:
        yield from ready
        while pending:
            with cond:
                while not finished:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        msg = (
                            f"{len(pending)} (of {len(fs)}) runs did not finish within {timeout} s."
                        )
                        raise TimeoutError(msg)
                    cond.wait(remaining)
                batch, finished[:] = list(finished), []
            for f in batch:
                pending.discard(f)
                yield f
    finally:
        for f in pending:
            f.remove_callback(on_done)
