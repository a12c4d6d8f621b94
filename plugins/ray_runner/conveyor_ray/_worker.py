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
"""

from __future__ import annotations

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


def _returns(outcome: Any, value: Any) -> Returned:
    """Ray's two return objects: ``[outcome, inlined, small]`` and the value (None if inlined)."""
    if outcome.status == "ok" and not outcome.records:
        # The common case travels as plain values, which Ray serializes without pickle.
        if _inline(value):
            return [None, True, value], None
        return [None, False, None], value
    if outcome.status == "ok" and _inline(value):
        return [outcome, True, value], None
    return [outcome, False, None], value


def execute_packed(payload: bytes, *deps: Any) -> Returned:
    """
    Run one packed attempt; return Ray's two return objects (see :func:`_returns`).

    Never raises: the envelope turns everything the task does into an outcome. Ray resolves
    ``deps`` (upstream ObjectRefs) to their values on the worker before this runs.
    """
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
            return _returns(*run_call(fn_blob, (), _NO_KWARGS, _NO_NAMES, level))

        return conveyor_run0

    def conveyor_run(*args: Any, **kwargs: Any) -> Returned:
        return _returns(*run_call(fn_blob, args, kwargs, _NO_NAMES, level))

    return conveyor_run
