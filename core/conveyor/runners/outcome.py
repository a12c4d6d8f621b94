"""
The one mapping from how a call ended to a run's state, used in-process (by
:class:`~conveyor.runners.Attempt`) and by the envelope of remote runners
(:mod:`conveyor.runners.remote`).

- An :class:`Exception` the user's code raised is FAILED, with that exception.
- ``SystemExit`` is CRASHED (``system-exit``); any other ``BaseException`` the code raised
  (``KeyboardInterrupt``, ``GeneratorExit``, a subclass of its own) is CRASHED
  (``interrupted``), on every runner, and the run's siblings go on.
- Only a real interrupt of *this very process* (Ctrl-C, or SIGTERM under the CLI) that lands
  while the call runs in it is CANCELLED, and goes on to interrupt the flow (see
  :mod:`conveyor._interrupts` for how conveyor tells the two apart).
"""

from __future__ import annotations

import traceback as tb_module
from typing import Any

from conveyor.exceptions import safe_str, shorten
from conveyor.states import Cancelled, Crashed, CrashReason, Failed, State

__all__ = [
    "classify_exception",
    "crash_message",
    "describe_exception",
    "format_exception",
    "safe_repr",
    "state_for_exception",
]


def classify_exception(exc: BaseException) -> CrashReason | None:
    """None if ``exc`` is the user's error (FAILED); else the reason it crashes the run."""
    if isinstance(exc, Exception):
        return None
    if isinstance(exc, SystemExit):
        return CrashReason.SYSTEM_EXIT
    return CrashReason.INTERRUPTED


def describe_exception(exc: BaseException) -> str:
    """What :func:`crash_message` quotes of ``exc``: the exit code for SystemExit, else str()."""
    if isinstance(exc, SystemExit):
        return shorten(safe_repr(exc.code))
    return shorten(safe_str(exc))


def crash_message(reason: CrashReason | str, error_type: str, error_message: str) -> str:
    """
    The message of a run crashed for ``reason`` by an exception of ``error_type`` (its
    :func:`describe_exception` is ``error_message``), wherever it was raised.
    """
    if reason == CrashReason.SYSTEM_EXIT:
        return f"The task called sys.exit({error_message})."
    if reason == CrashReason.INTERRUPTED:
        return f"The task was interrupted by {error_type}."
    if reason == CrashReason.ARGUMENT_DESERIALIZATION:
        return (
            f"The task's arguments could not be unpickled on the worker: {error_type}: "
            f"{error_message}"
        )
    return error_message or error_type


def safe_repr(obj: object) -> str:
    """``repr(obj)``, or a placeholder when its ``__repr__`` raises."""
    try:
        return repr(obj)
    except BaseException as exc:  # a __repr__ may raise anything
        return f"<{type(obj).__name__}.__repr__ raised {type(exc).__name__}>"


def format_exception(exc: BaseException) -> str:
    """``exc`` with its traceback, as text (never raising, whatever the exception does)."""
    try:
        return "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException as error:  # a hostile exception can break even the formatting
        return (
            f"{type(exc).__name__} (its traceback could not be formatted: {type(error).__name__})"
        )


def state_for_exception(
    exc: BaseException, *, traceback: str | None = None, interrupted: bool = False
) -> State[Any]:
    """
    The final state of an attempt whose call raised ``exc``; ``interrupted`` when ``exc`` is a
    real interrupt of this process that landed in the call (then it is CANCELLED).
    """
    if interrupted:
        return Cancelled(f"Interrupted by {type(exc).__name__} while running.", stopped=True)
    reason = classify_exception(exc)
    if reason is None:
        return Failed(exc, traceback=traceback)
    return Crashed(
        crash_message(reason, type(exc).__name__, describe_exception(exc)),
        reason=reason,
        exc=exc,
        traceback=traceback or format_exception(exc),
    )
