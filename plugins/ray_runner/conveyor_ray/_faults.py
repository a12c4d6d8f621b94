"""
How an exception that Ray raised (never the task's own: the envelope ships those as data) maps
to a CRASHED reason: the table "Faults: what you see" in ``plugins/ray_runner/README.md``.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from conveyor import CrashReason
from conveyor_ray._internals import NOT_STARTED_TEXT, OWNER_UNKNOWN_TEXT

__all__ = ["Fault", "classify", "clean"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def clean(text: str) -> str:
    """``text`` without ANSI colour codes, and without Ray's ``ray::task()`` header lines."""
    text = _ANSI.sub("", text)
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("ray::")]
    return "\n".join(lines).strip()


@attrs.frozen
class Fault:
    """A classified backend failure: the CRASHED ``reason``, a message, whether Ray is gone."""

    reason: CrashReason
    message: str
    lost: bool = False
    cancelled: bool = False


def _first_line(exc: BaseException) -> str:
    text = clean(str(exc))
    return text.splitlines()[0] if text else type(exc).__name__


def classify(exc: BaseException, ray: Any, name: str) -> Fault:
    """Map an exception raised by Ray for run ``name`` to a :class:`Fault`."""
    errors = ray.exceptions
    cause = getattr(exc, "cause", None) if isinstance(exc, errors.RayTaskError) else None
    if isinstance(exc, errors.TaskCancelledError) or isinstance(cause, errors.TaskCancelledError):
        return Fault(CrashReason.CANCELLED_EXTERNALLY, f"Ray cancelled {name!r}.", cancelled=True)
    if isinstance(exc, errors.OutOfMemoryError):
        return Fault(
            CrashReason.OOM_KILLED,
            f"{name!r} was killed because its Ray node ran low on memory: {_first_line(exc)}",
        )
    if isinstance(exc, errors.LocalRayletDiedError):
        return Fault(
            CrashReason.BACKEND_LOST, f"The local Ray raylet died: {_first_line(exc)}", lost=True
        )
    if isinstance(exc, (errors.WorkerCrashedError, errors.NodeDiedError)):
        return Fault(
            CrashReason.WORKER_DIED,
            f"The Ray worker running {name!r} died (os._exit, a signal, or the machine killed "
            f"it): {_first_line(exc)}",
        )
    if isinstance(exc, (errors.ObjectLostError, errors.OwnerDiedError)):
        return Fault(
            CrashReason.WORKER_DIED, f"The result of {name!r} was lost: {_first_line(exc)}"
        )
    if isinstance(exc, errors.TaskUnschedulableError):
        return Fault(
            CrashReason.RESOURCES_UNAVAILABLE, f"Ray cannot schedule {name!r}: {_first_line(exc)}"
        )
    if isinstance(exc, errors.RayTaskError):
        # The envelope never raises, so Ray failed around it: most often an upstream value
        # that cannot be unpickled on the worker.
        inner = cause if isinstance(cause, BaseException) else exc
        if isinstance(inner, errors.RaySystemError):
            return Fault(
                CrashReason.ARGUMENT_DESERIALIZATION,
                f"The arguments of {name!r} could not be unpickled on the Ray worker: "
                f"{_first_line(inner)}",
            )
        return Fault(
            CrashReason.BACKEND_ERROR,
            f"Ray failed to run {name!r}: {type(inner).__name__}: {_first_line(inner)}",
        )
    if isinstance(exc, SystemExit) or (
        isinstance(exc, ValueError) and OWNER_UNKNOWN_TEXT in str(exc)
    ):
        return Fault(
            CrashReason.BACKEND_LOST, "Ray was shut down while the run was in flight.", lost=True
        )
    if isinstance(exc, errors.RaySystemError) and NOT_STARTED_TEXT in str(exc):
        return Fault(CrashReason.BACKEND_LOST, "Ray is not running in this process.", lost=True)
    return Fault(CrashReason.BACKEND_ERROR, f"Ray raised {type(exc).__name__}: {_first_line(exc)}")
