"""
Dependencies between task runs: the futures a run was given as arguments, waiting until they
are final, and the state of a run whose upstream run did not complete.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from conveyor import _walk
from conveyor.futures import RunFuture
from conveyor.states import NotRun, State

__all__ = ["not_run", "substitute", "upstream_of", "when_all_done"]


def upstream_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[RunFuture[Any]]:
    """The futures among ``args`` and ``kwargs`` (inside their containers too), in order."""
    found: list[RunFuture[Any]] = []
    for a in args:
        if isinstance(a, RunFuture) or isinstance(a, _walk.CONTAINERS):
            _walk.find(a, RunFuture, found)
    for a in kwargs.values():
        if isinstance(a, RunFuture) or isinstance(a, _walk.CONTAINERS):
            _walk.find(a, RunFuture, found)
    return found


def substitute(obj: Any, values: dict[int, Any]) -> Any:
    """``obj`` with each future replaced by ``values[id(future)]``."""
    return _walk.replace(obj, RunFuture, lambda f: values[id(f)])


def not_run(upstream: RunFuture[Any], name: str) -> State[Any]:
    """The state of run ``name``, which never ran because ``upstream`` did not complete."""
    state = upstream.peek()
    detail = f" ({state.message})" if state.message else ""
    return NotRun(
        f"Upstream run {upstream.name!r} ended {state.name}{detail}, so {name!r} did not run."
    )


def when_all_done(futures: list[RunFuture[Any]], then: Callable[[], object]) -> None:
    """Call ``then()`` once, when every future is final (at once if they all are)."""
    waiting = [len(futures)]
    lock = threading.Lock()

    def one_done(_f: RunFuture[Any]) -> None:
        with lock:
            waiting[0] -= 1
            last = waiting[0] == 0
        if last:
            then()

    for f in futures:
        f.add_done_callback(one_done)
