"""
The Ray remote functions that runs call, made once and kept, and the rule that picks one.

A run goes to Ray one of two ways (see :mod:`conveyor_ray._worker`): *direct*, when Ray can
carry each of its arguments itself (:func:`direct_args`), as a call of a remote function made
once per task function, log level and options (:func:`direct_function`); or *packed* by
conveyor, as a call of the envelope's remote function, made once per Ray session
(:func:`packed_function`). The cancel helper actor of a session is made here too
(:func:`cancel_helper`).
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from conveyor.runners import Attempt
from conveyor.runners.remote import PLAIN_TYPES, function_bytes
from conveyor_ray._options import PINNED
from conveyor_ray._results import RayResult
from conveyor_ray._session import Session
from conveyor_ray._worker import CancelHelper, direct_entry, execute_packed

__all__ = [
    "cancel_helper",
    "direct_args",
    "direct_function",
    "native",
    "packed_function",
    "plain_array",
]

logger = logging.getLogger("conveyor.ray")

_lock = threading.Lock()
_packed_cache: dict[int, Any] = {}
_helpers: dict[int, Any] = {}

# The remote functions of each task function, by (session, log level, nullary, Ray options).
# They outlive the runner: a flow starts a runner of its own, and each remote function made
# anew is exported again, which costs the GCS and every worker that runs it some milliseconds.
_direct_cache: weakref.WeakKeyDictionary[Any, dict[tuple[int, int, bool, str], Any]] = (
    weakref.WeakKeyDictionary()
)


def packed_function(ray: Any, session: Session) -> Any:
    """The Ray remote function of the envelope, made once per Ray session."""
    with _lock:
        fn = _packed_cache.get(session.generation)
        if fn is None:
            _packed_cache.clear()
            fn = ray.remote(**PINNED)(execute_packed)
            _packed_cache[session.generation] = fn
        return fn


def cancel_helper(ray: Any, session: Session) -> Any:
    """
    The session's cancel helper actor (see :class:`~conveyor_ray._worker.CancelHelper`),
    started once per Ray session and asked for nothing (no CPU); None in a nested flow, whose
    worker should not start actors, or if Ray refuses to start it. It lives as long as this
    process's connection to Ray.
    """
    if session.in_worker:
        return None
    with _lock:
        helper = _helpers.get(session.generation)
        if helper is None:
            _helpers.clear()  # a helper of a Ray session that has ended
            try:
                helper = ray.remote(num_cpus=0, max_restarts=0)(CancelHelper).remote()
            except Exception:
                logger.debug("conveyor could not start its Ray cancel helper.", exc_info=True)
                return None
            _helpers[session.generation] = helper
        return helper


def direct_function(
    ray: Any,
    session: Session,
    fn: Any,
    level: int,
    nullary: bool,
    options: Mapping[str, Any],
) -> Any:
    """The Ray remote function running ``fn`` directly, made once per session and options."""
    spec = (session.generation, level, nullary, repr(sorted(options.items())))
    with _lock:
        try:
            made = _direct_cache.setdefault(fn, {})
        except TypeError:  # not weak-referenceable: made for this runner only
            made = {}
        remote = made.get(spec)
        if remote is None:
            if any(other[0] != session.generation for other in made):
                made.clear()  # made for a Ray session that has ended
            entry = direct_entry(function_bytes(fn), level, nullary)
            # Ray's dashboard and timeline name the task after the task function.
            named = {} if "name" in options else {"name": _task_name(fn)}
            remote = made[spec] = ray.remote(**PINNED, **named, **options)(entry)
        return remote


def _task_name(fn: Any) -> str:
    """The name Ray shows for runs of ``fn``: the function's own name."""
    while hasattr(fn, "func") and not hasattr(fn, "__name__"):  # functools.partial
        fn = fn.func
    return str(getattr(fn, "__name__", None) or "conveyor_run")


def plain_array(kind: type, value: Any) -> bool:
    """
    Whether ``value`` is a NumPy array of plain numbers, which Ray carries itself: it always
    pickles, and Ray stores a large one once and hands it to the worker without a copy
    (read-only, as Ray gives every array it stores), where packing copied it six times.
    """
    numpy = sys.modules.get("numpy")  # an array's module is imported; conveyor never imports it
    return numpy is not None and kind is numpy.ndarray and not value.dtype.hasobject


def native(value: Any, session: Session | None) -> Any:
    """The ``ObjectRef`` of ``value`` if it is a result of ``session``, else None."""
    if isinstance(value, RayResult) and value.session is session:
        return value.object_ref
    return None


def direct_args(
    attempt: Attempt, session: Session | None
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """
    The run's arguments as Ray task arguments, if each is a plain value or a result of
    ``session`` (passed as its ObjectRef); None if the run must be packed.
    """
    args, kwargs = attempt.args, attempt.kwargs
    swapped = False
    for value in (*args, *kwargs.values()):
        kind = type(value)
        if kind in PLAIN_TYPES or plain_array(kind, value):
            continue
        if kind is RayResult and value.session is session:
            swapped = True
            continue
        return None
    if not swapped:
        return args, kwargs
    return tuple(native(v, session) or v for v in args), {
        k: native(v, session) or v for k, v in kwargs.items()
    }
