"""
The driver's half of the envelope: pack an attempt's call for a worker, and what comes back.

Upstream values that the backend passes natively (Dask futures, Ray ObjectRefs) travel beside
the packed payload as ``deps``: the payload holds :class:`Dep` placeholders for them.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from conveyor import _walk
from conveyor.runners.remote.pickling import PackError, dumps, function_bytes
from conveyor.states import CrashReason, ResultRef

if TYPE_CHECKING:
    from conveyor.runners.attempt import Attempt

__all__ = ["Dep", "Outcome", "describe_type", "pack_call", "pack_or_crash"]


class Dep(NamedTuple):
    """Placeholder in a packed call for the ``position``-th natively passed upstream value."""

    position: int


class Outcome(NamedTuple):
    """
    What the worker sends back besides the value: ``status`` is ``ok``, ``error`` (the user's
    code raised an :class:`Exception`) or ``crash``. ``error`` holds the pickled exception
    when it pickled; ``reason`` tags crashes; ``records`` are the task's log records;
    ``where`` names the worker process (``process 4242 on host``) for the run record.
    """

    status: str
    error: bytes | None = None
    error_type: str = ""
    error_message: str = ""
    traceback: str | None = None
    reason: str | None = None
    records: tuple[dict[str, Any], ...] = ()
    where: str | None = None


def describe_type(value: Any) -> str:
    """``module.QualName`` of ``value``'s type, for messages."""
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _find_unpicklable(values: list[Any]) -> str:
    for value in values:
        try:
            dumps(value)
        except Exception:
            return describe_type(value)
    return "unknown"


def pack_call(
    attempt: Attempt, native: Callable[[Any], Any] | None = None
) -> tuple[bytes, list[Any]]:
    """
    Pickle the attempt's function, arguments and run names; return ``(payload, deps)``.

    ``native(value)`` may return a backend object for an upstream value (a
    :class:`~conveyor.ResultRef` of this backend) or None; those travel in ``deps``, the others
    are fetched here. Raises :class:`PackError` naming the type that cannot be pickled.
    """
    deps: list[Any] = []

    def swap(ref: ResultRef[Any]) -> Any:
        handle = native(ref) if native is not None else None
        if handle is None:
            return ref.get()
        deps.append(handle)
        return Dep(len(deps) - 1)

    args = _walk.replace(attempt.args, ResultRef, swap)
    kwargs = _walk.replace(attempt.kwargs, ResultRef, swap)
    names = (attempt.flow_run_name, attempt.name)
    try:
        fn_blob = function_bytes(attempt.fn)
        call_blob = dumps((args, kwargs, names, logging.getLogger().getEffectiveLevel()))
        payload = pickle.dumps((fn_blob, call_blob), protocol=pickle.HIGHEST_PROTOCOL)
    except PackError:
        raise
    except Exception as exc:
        culprit = _find_unpicklable([attempt.fn, *args, *kwargs.values()])
        msg = f"An argument of type {culprit} cannot be pickled: {type(exc).__name__}: {exc}"
        raise PackError(msg) from exc
    return payload, deps


def pack_or_crash(
    attempt: Attempt, native: Callable[[Any], Any] | None = None
) -> tuple[bytes, list[Any]] | None:
    """
    :func:`pack_call`, but an argument that cannot be pickled crashes the attempt
    (``argument-serialization``) and returns None: ``submit()`` never raises for it, and the
    task body never runs.
    """
    try:
        return pack_call(attempt, native)
    except PackError as exc:
        attempt.crash(str(exc), reason=CrashReason.ARGUMENT_SERIALIZATION, exc=exc.__cause__)
        return None
    except Exception as exc:  # a ResultRef that could not be fetched
        attempt.crash(
            f"An upstream value could not be fetched: {type(exc).__name__}: {exc}",
            reason=CrashReason.UPSTREAM_RESULT,
            exc=exc,
        )
        return None
