"""
What runs on the Ray worker: conveyor's envelope, as module-level functions so that Ray
exports them by reference.

A run reaches the worker one of two ways:

- **direct**: when every argument is a plain value (``None``, numbers, ``str``, ``bytes``) or a
  result of this Ray session, the arguments travel as Ray's own task arguments (upstream
  results as their ``ObjectRef``), to a remote function made once per task function by
  :func:`direct_entry`. No conveyor payload travels with the run: a Ray task with no arguments
  costs the worker about 0.1 ms less than one with any argument.
- **packed**: anything else travels pickled by conveyor (:func:`execute_packed`), which names an
  argument that cannot be pickled and tells a failed unpickle on the worker from the task's own
  errors.

A worker that runs conveyor runs ignores a SIGINT that is not Ray's own cancel of its task
(:func:`guard_sigint`): a terminal sends Ctrl-C to its whole process group, Ray's workers
included, and it is meant for the driver, which cancels its runs itself. The cancel helper
(:class:`CancelHelper`) runs here too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from conveyor.runners.remote import run_call, run_packed

# Values of these types (strings and bytes up to INLINE_BYTES) come back with the outcome, so
# the driver needs no second round trip for them. Unpickling them has no side effects.
INLINE_TYPES = (type(None), bool, int, float, complex)
INLINE_BYTES = 1024

# The first return object is a list, not a tuple: Ray packs a list with msgpack, but pickles a
# tuple, which cost the worker about 30 µs per run (measured with raw Ray tasks).
Returned = tuple[list[Any], Any]


def _inline(value: Any) -> bool:
    kind = type(value)
    if kind in INLINE_TYPES:
        return True
    return kind in (str, bytes) and len(value) <= INLINE_BYTES


_place: list[tuple[int, str]] = []


def ray_place() -> str:
    """
    This Ray worker, in words, for the run record and the HTML report: ``ray node 3f2a9c1d
    worker 4242`` (its node id's first 8 hex digits and its pid), worked out once per process.
    """
    pid = os.getpid()
    if not _place or _place[0][0] != pid:
        try:
            node = str(sys.modules["ray"].get_runtime_context().get_node_id())[:8]
        except Exception:  # not in a Ray worker (a test calling this directly): no node
            node = "?"
        _place[:] = [(pid, f"ray node {node} worker {pid}")]
    return _place[0][1]


def _returns(outcome: Any, value: Any) -> Returned:
    """
    Ray's two return objects: ``[outcome, inlined, small, where]`` and the value (None if
    inlined); ``where`` is :func:`ray_place`, a short string (the dispatcher takes it off).
    """
    where = ray_place()
    if outcome.status == "ok" and not outcome.records:
        # The common case travels as plain values, which Ray serializes without pickle.
        if _inline(value):
            return [None, True, value, where], None
        return [None, False, None, where], value
    if outcome.status == "ok" and _inline(value):
        return [outcome, True, value, where], None
    return [outcome, False, None, where], value


_guarded = False


def _cancelled() -> bool:
    """Whether Ray cancelled the task this worker runs (Ray sets it before it interrupts)."""
    try:
        return bool(sys.modules["ray"].get_runtime_context().is_canceled())
    except Exception:  # cannot tell: treat it as Ray's cancel, which Ray's semantics need
        return True


def _on_sigint(_signum: int, _frame: Any) -> None:
    """A SIGINT on a worker: Ray's cancel of the running task interrupts it; others do not."""
    if _cancelled():
        raise KeyboardInterrupt


def guard_sigint() -> None:
    """
    Once per worker process, make SIGINT interrupt a task only when Ray cancelled it.

    Ray's cooperative cancel (``ray.cancel(force=False)``) interrupts the worker's main thread
    through Python's SIGINT handler, so that handler stays Python's: it raises
    ``KeyboardInterrupt`` when Ray says the running task is cancelled, and ignores any other
    SIGINT, such as a Ctrl-C a terminal sends to every process of its group. Being Python-level,
    it also keeps ``asyncio.run`` (an async task's event loop) from installing a handler of its
    own, which Python 3.11 cannot restore when the task's exception's ``__repr__`` raises: that
    left the worker failing every later task.
    """
    global _guarded
    if _guarded or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _on_sigint)
    _guarded = True


def execute_packed(payload: bytes, *deps: Any) -> Returned:
    """
    Run one packed attempt; return Ray's two return objects (see :func:`_returns`).

    Never raises: the envelope turns everything the task does into an outcome. Ray resolves
    ``deps`` (upstream ObjectRefs) to their values on the worker before this runs.
    """
    guard_sigint()
    return _returns(*run_packed(payload, *deps))


_NO_NAMES: tuple[None, None] = (None, None)
_NO_KWARGS: dict[str, Any] = {}


def direct_entry(fn_blob: bytes, level: int, nullary: bool = False) -> Callable[..., Returned]:
    """
    The remote function of one task function (pickled as ``fn_blob``), capturing log records
    at ``level``: Ray passes the run's arguments to it as they are. The driver names the log
    records, so the run's names need not travel.

    ``nullary`` gives a function of no parameters, for runs without arguments: Ray binds the
    arguments of every call to a function's signature unless it has no parameters.
    """
    if nullary:

        def conveyor_run0() -> Returned:
            guard_sigint()
            return _returns(*run_call(fn_blob, (), _NO_KWARGS, _NO_NAMES, level))

        return conveyor_run0

    def conveyor_run(*args: Any, **kwargs: Any) -> Returned:
        guard_sigint()
        return _returns(*run_call(fn_blob, args, kwargs, _NO_NAMES, level))

    return conveyor_run


class CancelHelper:
    """
    The body of a Ray actor that cancels a driver's runs for it, made once per Ray session.

    Ray's ``ray.cancel`` of a task the caller does not own is forwarded to the task's owner,
    which runs it on its core worker's event loop, the same thread that handles the replies of
    finished tasks. A driver's own ``ray.cancel`` runs on the calling thread instead, and Ray
    2.60 aborts the driver when it lands between a finishing task's reply and Ray's bookkeeping
    of it (``task_manager.cc``: "Tried to complete task that was not pending"). Cancels sent
    through this actor cannot land there.
    """

    def __init__(self) -> None:
        # A Ctrl-C a terminal sends the whole process group is the driver's, not this actor's.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def cancel(self, refs: list[Any], force: bool) -> int:
        """``ray.cancel`` every ref of ``refs`` (nested in a list, so Ray does not wait for them)."""
        ray = sys.modules["ray"]
        done = 0
        for ref in refs:
            try:
                ray.cancel(ref, force=force)
                done += 1
            except Exception:  # finished, or its owner is gone: nothing to cancel
                continue
        return done

    def ready(self) -> bool:
        """Answers once the actor is up."""
        return True
