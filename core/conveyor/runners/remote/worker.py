"""
The worker's half of the envelope: run a packed call and say how it ended, never raising.

Everything the user's function raises comes back as data (FAILED), while ``SystemExit`` and
``KeyboardInterrupt`` are caught here (CRASHED) and never kill the worker, by the one rule of
:mod:`conveyor.runners.outcome`. A return value is checked to pickle and unpickle before the run
is reported COMPLETED, so a generator is never mistaken for its first item. Log records the task
makes are captured and shipped back with the outcome.
"""

from __future__ import annotations

import contextvars
import logging
import os
import pickle
import socket
from collections.abc import Callable
from typing import Any

from conveyor import _walk
from conveyor._context import log_names_var
from conveyor.exceptions import describe, safe_str, shorten
from conveyor.run_logging import install_record_factory
from conveyor.runners.attempt import is_async_callable
from conveyor.runners.outcome import classify_exception, describe_exception, format_exception
from conveyor.runners.remote.envelope import Dep, Outcome, describe_type
from conveyor.runners.remote.pickling import PLAIN_TYPES, cloudpickle, dumps, load_function, loads
from conveyor.states import CrashReason

__all__ = ["run_call", "run_packed"]


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
    exc: BaseException,
    status: str,
    reason: CrashReason | None,
    records: list[dict[str, Any]],
    message: str | None = None,
) -> Outcome:
    text = format_exception(exc)
    try:
        # The traceback travels as text: a pickled one (distributed installs tblib, which
        # pickles tracebacks) would fail for a deep RecursionError.
        blob: bytes | None = dumps(_without_tracebacks(exc))
    except BaseException as error:  # a hostile __reduce__ may raise anything
        blob = None
        if status == "error":  # the code raised an exception that cannot travel back
            reason = CrashReason.RESULT_SERIALIZATION
            message = (
                f"{shorten(safe_str(exc))}, which cannot be pickled on the worker: "
                f"{describe(error)}"
            )
    if message is None:
        message = shorten(safe_str(exc)) if status == "error" else describe_exception(exc)
    return Outcome(
        status,
        blob,
        describe_type(exc),
        message,
        text,
        reason,
        tuple(records),
        _where(),
    )


def _without_tracebacks(exc: BaseException) -> BaseException:
    """``exc``, and the exceptions chained to it, with their tracebacks dropped."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
    return exc


_place: list[tuple[int, str]] = []


def _where() -> str:
    """This worker process, in words: ``process 4242 on host`` (worked out once per process)."""
    pid = os.getpid()
    if not _place or _place[0][0] != pid:  # a forked worker is another process
        _place[:] = [(pid, f"process {pid} on {socket.gethostname()}")]
    return _place[0][1]


def _run(fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    if is_async_callable(fn):
        import anyio  # deferred: only async tasks need an event loop on the worker

        return anyio.run(lambda: fn(*args, **kwargs))
    return fn(*args, **kwargs)


def run_packed(payload: bytes, *deps: Any) -> tuple[Outcome, Any]:
    """
    Run a packed call on the worker; return ``(outcome, value)``. Never raises.

    ``value`` is the function's return value when ``outcome.status == "ok"`` (checked to
    pickle and unpickle), else None.
    """
    try:
        fn_blob, call_blob = loads(payload)
        args, kwargs, names, level = loads(call_blob)
        if deps:
            args = _walk.replace(args, Dep, lambda d: deps[d.position])
            kwargs = _walk.replace(kwargs, Dep, lambda d: deps[d.position])
    except BaseException as exc:
        return _error(exc, "crash", CrashReason.ARGUMENT_DESERIALIZATION, []), None
    return run_call(fn_blob, args, kwargs, names, level)


def run_call(
    fn_blob: bytes,
    args: Any,
    kwargs: Any,
    names: tuple[str | None, str | None],
    level: int,
) -> tuple[Outcome, Any]:
    """
    Run the function pickled as ``fn_blob`` (by ``function_bytes``) with ``args`` and
    ``kwargs`` on the worker, as :func:`run_packed` does once it has unpacked the call; return
    ``(outcome, value)``. Never raises.

    Log records at ``level`` or above are captured with ``names``; a backend that does not
    send the names along passes ``(None, None)`` and the driver names the records when it
    replays them (``report_outcome``).
    """
    try:
        fn = load_function(fn_blob)
    except BaseException as exc:
        return _error(exc, "crash", CrashReason.ARGUMENT_DESERIALIZATION, []), None
    install_record_factory()
    _capturing(level)
    records: list[dict[str, Any]] = []
    token = log_names_var.set(names)
    capture_token = _capture_var.set((names, records))
    try:
        try:
            value = _run(fn, args, kwargs)
        except BaseException as exc:
            reason = classify_exception(exc)
            return _error(exc, "error" if reason is None else "crash", reason, records), None
    finally:
        _capture_var.reset(capture_token)
        log_names_var.reset(token)
    return _checked(value, records)


def _checked(value: Any, records: list[dict[str, Any]]) -> tuple[Outcome, Any]:
    """The outcome of a call that returned ``value``: ok if it pickles and unpickles."""
    if type(value) in PLAIN_TYPES:  # nothing to check: these always pickle and unpickle
        return Outcome("ok", records=tuple(records), where=_where()), value
    buffers: list[Any] = []
    try:
        blob = cloudpickle().dumps(value, protocol=5, buffer_callback=buffers.append)
    except BaseException as exc:  # a hostile __reduce__ may raise anything
        message = (
            f"The task returned a value of type {describe_type(value)} that cannot be "
            f"pickled: {describe(exc)}"
        )
        return _error(exc, "crash", CrashReason.RESULT_SERIALIZATION, records, message), None
    try:
        pickle.loads(blob, buffers=buffers)
    except BaseException as exc:  # unpickling may call anything, even sys.exit
        message = (
            f"The task returned a value of type {describe_type(value)} that pickles "
            f"but cannot be unpickled: {describe(exc)}"
        )
        return _error(exc, "crash", CrashReason.RESULT_DESERIALIZATION, records, message), None
    return Outcome("ok", records=tuple(records), where=_where()), value
