"""
The worker-side envelope for runners that execute tasks in other processes (Dask, Ray, a
subprocess).

The driver packs each attempt with :func:`pack_call`; the worker runs :func:`run_packed`
instead of the user function; the driver turns what came back into the run's state with
:func:`report_outcome`. The envelope is why remote runners are honest about failures:

- everything the user's function raises comes back as data (FAILED), while anything the
  backend raises is infrastructure (CRASHED);
- ``SystemExit`` and ``KeyboardInterrupt`` inside a task are caught on the worker (CRASHED,
  ``system-exit``/``interrupted``) and never kill it;
- arguments that cannot be pickled are caught at submit (``argument-serialization``), arguments
  that cannot be unpickled on the worker (``argument-deserialization``), results that cannot be
  pickled or unpickled (``result-serialization``/``result-deserialization``) on the worker,
  before the run is reported COMPLETED; a generator is never mistaken for its first item;
- log records the task makes on the worker are shipped back and handled by the driver's
  loggers, with the run's names.

Upstream values that the backend passes natively (Dask futures, Ray ObjectRefs) travel beside
the packed payload as ``deps``: the payload holds :class:`Dep` placeholders for them.
"""

from __future__ import annotations

import contextvars
import logging
import pickle
import traceback as tb_module
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from conveyor._context import log_names_var
from conveyor.states import ResultRef

if TYPE_CHECKING:
    from conveyor.runners.base import Attempt

__all__ = [
    "PLAIN_TYPES",
    "Dep",
    "Outcome",
    "PackError",
    "dumps",
    "function_bytes",
    "load_function",
    "loads",
    "pack_call",
    "pack_or_crash",
    "replay_records",
    "report_outcome",
    "run_call",
    "run_packed",
]

_pickler: Any = None  # cloudpickle, imported on first use: discovery stays light


def _cloudpickle() -> Any:
    """cloudpickle, which pickles functions defined in __main__, closures and lambdas by value."""
    global _pickler
    if _pickler is None:
        try:
            import cloudpickle
        except ImportError:  # pragma: no cover - the remote runners' distributions depend on it
            msg = (
                "Running tasks in another process needs cloudpickle, which is not installed; "
                "install it with `pip install cloudpickle`."
            )
            raise PackError(msg) from None
        _pickler = cloudpickle
    return _pickler


def dumps(obj: Any) -> bytes:
    """
    Pickle ``obj`` with cloudpickle, which pickles the functions behind ``@task`` (often
    defined in ``__main__``) by value. Raises :class:`PackError` if cloudpickle is missing.
    """
    # The standard pickler is several times faster; its output is used unless it refers to
    # __main__ (which a worker cannot import) or it cannot pickle the object at all.
    try:
        data: bytes = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        data = b"__main__"
    if b"__main__" in data:
        data = _cloudpickle().dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def loads(data: bytes) -> Any:
    """Unpickle what :func:`dumps` made."""
    return pickle.loads(data)


class Dep(NamedTuple):
    """Placeholder in a packed call for the ``index``-th natively passed upstream value."""

    position: int


class PackError(Exception):
    """The call could not be pickled; the message names the value's type."""


class Outcome(NamedTuple):
    """
    What the worker sends back besides the value: ``status`` is ``ok``, ``error`` (the user's
    code raised an :class:`Exception`) or ``crash``. ``error`` holds the pickled exception
    when it pickled; ``reason`` tags crashes; ``records`` are the task's log records.
    """

    status: str
    error: bytes | None = None
    error_type: str = ""
    error_message: str = ""
    traceback: str | None = None
    reason: str | None = None
    records: tuple[dict[str, Any], ...] = ()


def _describe(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _find_unpicklable(values: list[Any]) -> str:
    for value in values:
        try:
            dumps(value)
        except Exception:
            return _describe(value)
    return "unknown"


def pack_call(
    attempt: Attempt, native: Callable[[Any], Any] | None = None
) -> tuple[bytes, list[Any]]:
    """
    Pickle the attempt's function, arguments and run names; return ``(payload, deps)``.

    ``native(value)`` may return a backend object for an upstream value (a
    :class:`~conveyor.ResultRef` of this backend) or None; those travel in ``deps``. Raises
    :class:`PackError` naming the type that cannot be pickled.
    """
    deps: list[Any] = []
    args, kwargs = attempt.args, attempt.kwargs
    if native is not None:
        args = _swap_refs(args, native, deps)
        kwargs = _swap_refs(kwargs, native, deps)
    else:
        args = _swap_refs(args, _fetch, deps)
        kwargs = _swap_refs(kwargs, _fetch, deps)
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
        attempt.crash(str(exc), reason="argument-serialization", exc=exc.__cause__)
        return None
    except Exception as exc:  # a ResultRef that could not be fetched
        attempt.crash(
            f"An upstream value could not be fetched: {type(exc).__name__}: {exc}",
            reason="upstream-result",
            exc=exc,
        )
        return None


# Pickled functions, by function: a map of 1,000 runs pickles its function once (as Dask's
# own dumps_function does). Workers keep the last unpickled functions by their bytes.
_FN_CACHE: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()
_FN_LOADED: dict[bytes, Any] = {}
_FN_LOADED_MAX = 256


def function_bytes(fn: Any) -> bytes:
    """``fn`` pickled with :func:`dumps`, once per function (cached while ``fn`` lives)."""
    try:
        return _FN_CACHE[fn]
    except (KeyError, TypeError):
        pass
    blob = dumps(fn)
    try:
        _FN_CACHE[fn] = blob
    except TypeError:  # not weak-referenceable: pickle it each time
        pass
    return blob


def load_function(blob: bytes) -> Any:
    """The function :func:`function_bytes` pickled; a worker unpickles each one once."""
    fn = _FN_LOADED.get(blob)
    if fn is None:
        fn = loads(blob)
        if len(_FN_LOADED) >= _FN_LOADED_MAX:
            _FN_LOADED.clear()
        _FN_LOADED[blob] = fn
    return fn


def _fetch(value: Any) -> Any:
    return None


def _swap_refs(obj: Any, native: Callable[[Any], Any], deps: list[Any], depth: int = 0) -> Any:
    if isinstance(obj, ResultRef):
        handle = native(obj)
        if handle is None:
            return obj.get()
        deps.append(handle)
        return Dep(len(deps) - 1)
    if depth >= 8:
        return obj
    if isinstance(obj, dict):
        if not any(isinstance(v, ResultRef | list | tuple | dict) for v in obj.values()):
            return obj
        return {k: _swap_refs(v, native, deps, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        if not any(isinstance(v, ResultRef | list | tuple | dict) for v in obj):
            return obj
        items = [_swap_refs(v, native, deps, depth + 1) for v in obj]
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)(*items)
        return type(obj)(items)
    return obj


def _fill(obj: Any, deps: tuple[Any, ...], depth: int = 0) -> Any:
    if isinstance(obj, Dep):
        return deps[obj.position]
    if depth >= 8:
        return obj
    if isinstance(obj, dict):
        return {k: _fill(v, deps, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        items = [_fill(v, deps, depth + 1) for v in obj]
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)(*items)
        return type(obj)(items)
    return obj


# -- worker side ---------------------------------------------------------------------------


class _Capture(logging.Handler):
    """
    One handler on the worker's root logger, installed once: it appends each record made by a
    task run to that run's list (found through a context variable), so a run costs no handler
    of its own.
    """

    def emit(self, record: logging.LogRecord) -> None:
        target = _capture_var.get()
        if target is None:
            return
        names, records = target
        if (
            getattr(record, "flow_run_name", None),
            getattr(record, "task_run_name", None),
        ) != names:
            return
        data = dict(record.__dict__)
        data["msg"] = record.getMessage()
        data["args"] = None
        if record.exc_info:
            data["exc_text"] = logging.Formatter().formatException(record.exc_info)
        data["exc_info"] = None
        data["remote"] = True
        records.append(data)


_capture_var: contextvars.ContextVar[
    tuple[tuple[str | None, str | None], list[dict[str, Any]]] | None
] = contextvars.ContextVar("conveyor_capture", default=None)
_capture_handler: _Capture | None = None


def _capturing(level: int) -> None:
    """Install the capture handler once, and let records of ``level`` reach it."""
    global _capture_handler
    root = logging.getLogger()
    if _capture_handler is None:
        _capture_handler = _Capture(logging.NOTSET)
        root.addHandler(_capture_handler)
    if level < root.getEffectiveLevel():
        root.setLevel(level)  # as verbose as the driver, so its handlers see what it would


def _error(
    exc: BaseException, status: str, reason: str | None, records: list[dict[str, Any]]
) -> Outcome:
    try:
        blob: bytes | None = dumps(exc)
    except Exception:
        blob = None
    text = "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__))
    return Outcome(status, blob, _describe(exc), str(exc), text, reason, tuple(records))


def _run(fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    from conveyor.runners.base import is_async_callable

    if is_async_callable(fn):
        import anyio

        return anyio.run(lambda: fn(*args, **kwargs))
    return fn(*args, **kwargs)


# Values of these types always pickle and unpickle.
PLAIN_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes})


def run_packed(payload: bytes, *deps: Any) -> tuple[Outcome, Any]:
    """
    Run a packed call on the worker; return ``(outcome, value)``. Never raises.

    ``value`` is the function's return value when ``outcome.status == "ok"`` (checked to
    pickle and unpickle), else None.
    """
    try:
        fn_blob, call_blob = loads(payload)
        args, kwargs, names, level = loads(call_blob)
        args = _fill(args, deps)
        kwargs = _fill(kwargs, deps)
    except BaseException as exc:
        return _error(exc, "crash", "argument-deserialization", []), None
    return run_call(fn_blob, args, kwargs, names, level)


def run_call(
    fn_blob: bytes,
    args: Any,
    kwargs: Any,
    names: tuple[str | None, str | None],
    level: int,
) -> tuple[Outcome, Any]:
    """
    Run the function pickled as ``fn_blob`` (by :func:`function_bytes`) with ``args`` and
    ``kwargs`` on the worker, as :func:`run_packed` does once it has unpacked the call; return
    ``(outcome, value)``. Never raises.

    Log records at ``level`` or above are captured with ``names``; a backend that does not
    send the names along passes ``(None, None)`` and the driver names the records when it
    replays them (:func:`report_outcome`).
    """
    from conveyor.run_logging import install_record_factory

    try:
        fn = load_function(fn_blob)
    except BaseException as exc:
        return _error(exc, "crash", "argument-deserialization", []), None
    install_record_factory()
    _capturing(level)
    records: list[dict[str, Any]] = []
    token = log_names_var.set(names)
    capture_token = _capture_var.set((names, records))
    try:
        try:
            value = _run(fn, args, kwargs)
        except Exception as exc:
            return _error(exc, "error", None, records), None
        except SystemExit as exc:
            return _error(exc, "crash", "system-exit", records), None
        except BaseException as exc:
            return _error(exc, "crash", "interrupted", records), None
    finally:
        _capture_var.reset(capture_token)
        log_names_var.reset(token)
    try:
        buffers: list[Any] = []
        if type(value) in PLAIN_TYPES:  # nothing to check: these always pickle and unpickle
            return Outcome("ok", records=tuple(records)), value
        blob = _cloudpickle().dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        outcome = _error(exc, "crash", "result-serialization", records)
        return outcome._replace(
            error_message=f"The task returned a value of type {_describe(value)} that cannot be "
            f"pickled: {type(exc).__name__}: {exc}",
        ), None
    try:
        pickle.loads(blob, buffers=buffers)
    except Exception as exc:
        outcome = _error(exc, "crash", "result-deserialization", records)
        return outcome._replace(
            error_message=f"The task returned a value of type {_describe(value)} that pickles "
            f"but cannot be unpickled: {type(exc).__name__}: {exc}",
        ), None
    return Outcome("ok", records=tuple(records)), value


# -- driver side ---------------------------------------------------------------------------


def replay_records(outcome: Outcome, names: tuple[str, str] | None = None) -> None:
    """
    Hand the task's worker-side log records to the driver's loggers; records made without the
    run's names (see :func:`run_call`) get ``names``.
    """
    for data in outcome.records:
        if names is not None and data.get("task_run_name") is None:
            data["flow_run_name"], data["task_run_name"] = names
        record = logging.makeLogRecord(data)
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def report_outcome(attempt: Attempt, outcome: Outcome, value: Any) -> None:
    """
    Report how a remote attempt ended: replay its logs, then succeed with ``value`` (a value
    or a :class:`~conveyor.ResultRef`), fail with the user's exception, or crash.
    """
    if outcome.records:
        replay_records(outcome, (attempt.flow_run_name, attempt.name))
    if outcome.status == "ok":
        attempt.succeed(value)
        return
    exc: BaseException | None = None
    if outcome.error is not None:
        try:
            exc = loads(outcome.error)
        except Exception as load_exc:
            attempt.crash(
                f"The task raised {outcome.error_type}: {outcome.error_message}, which cannot be "
                f"unpickled here: {type(load_exc).__name__}: {load_exc}",
                reason="result-deserialization",
                exc=load_exc,
                traceback=outcome.traceback,
            )
            return
    if outcome.status == "error" and isinstance(exc, Exception):
        attempt.fail(exc, outcome.traceback)
        return
    if outcome.status == "error":
        attempt.crash(
            f"The task raised {outcome.error_type}: {outcome.error_message}, which cannot be "
            "unpickled here.",
            reason="result-deserialization",
            traceback=outcome.traceback,
        )
        return
    reason = outcome.reason or "backend-error"
    if reason == "system-exit":
        message = f"The task called sys.exit({outcome.error_message})."
    elif reason == "interrupted":
        message = f"The task was interrupted by {outcome.error_type}."
    elif reason == "argument-deserialization":
        message = (
            f"The task's arguments could not be unpickled on the worker: "
            f"{outcome.error_type}: {outcome.error_message}"
        )
    else:
        message = outcome.error_message or f"{outcome.error_type}"
    attempt.crash(message, reason=reason, exc=exc, traceback=outcome.traceback)
