"""
Run states: immutable values that say where a task run or flow run is.

A state has a :class:`StateType` and a ``name``. Named states refine a type: ``Retrying`` is a
PENDING state, ``Cached`` (a result from the result store) is a COMPLETED state, ``TimedOut``
and ``NotRun`` are FAILED states. FAILED means the user's code raised
(or ran past its timeout); CRASHED means the infrastructure failed: a worker died, the backend
went away, or a value could not be serialized.

>>> s = Completed(42)
>>> s.is_completed(), s.is_final(), s.result()
(True, True, 42)
>>> Failed(ValueError("boom")).result(raise_on_failure=False)
ValueError('boom')
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import attrs

from conveyor.exceptions import (
    CancelledRun,
    ConveyorError,
    CrashedRun,
    TimedOutRun,
    UpstreamFailedError,
    describe,
    shorten,
)

__all__ = [
    "FINAL_TYPES",
    "Cached",
    "Cancelled",
    "Completed",
    "CrashReason",
    "Crashed",
    "Failed",
    "NotRun",
    "Pending",
    "ResultRef",
    "Retrying",
    "Running",
    "State",
    "StateType",
    "TimedOut",
]

T = TypeVar("T")


class StateType(str, enum.Enum):
    """
    The kind of a state. COMPLETED, FAILED, CRASHED and CANCELLED are final.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"

    def __repr__(self) -> str:
        return f"StateType.{self.value}"


FINAL_TYPES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
)


class CrashReason(str, enum.Enum):
    """
    Why the infrastructure failed a run: the ``reason`` of a CRASHED state.

    Every runner uses the same member for the same cause. A member is a string, so
    ``state.reason == "worker-died"`` holds; ``CrashReason.WORKER_DIED.meaning`` says it in a
    line.

    >>> CrashReason("worker-died") is CrashReason.WORKER_DIED, str(CrashReason.OOM_KILLED)
    (True, 'oom-killed')
    """

    meaning: str

    def __new__(cls, value: str, meaning: str = "") -> CrashReason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    BACKEND_ERROR = ("backend-error", "The runner or its backend failed in an unexpected way.")
    BACKEND_LOST = (
        "backend-lost",
        "The backend (cluster, scheduler, Ray) went away while the run was in flight.",
    )
    RUNNER_STOPPED = ("runner-stopped", "The runner was stopped while the run was in flight.")
    WORKER_DIED = (
        "worker-died",
        "The process running the task died (killed, os._exit, a segfault).",
    )
    OOM_KILLED = (
        "oom-killed",
        "The process running the task was killed for using too much memory.",
    )
    SYSTEM_EXIT = ("system-exit", "The task called sys.exit() (raised SystemExit).")
    INTERRUPTED = (
        "interrupted",
        "The task raised a BaseException that is not an Exception (KeyboardInterrupt, ...).",
    )
    ARGUMENT_SERIALIZATION = (
        "argument-serialization",
        "The run's arguments (or its function) could not be pickled; the task never started.",
    )
    ARGUMENT_DESERIALIZATION = (
        "argument-deserialization",
        "The worker could not unpickle the run's arguments; the task never started.",
    )
    RESULT_SERIALIZATION = (
        "result-serialization",
        "The worker could not pickle the task's return value (or its exception).",
    )
    RESULT_DESERIALIZATION = (
        "result-deserialization",
        "The driver could not unpickle the task's return value (or its exception).",
    )
    RESULT_LOST = (
        "result-lost",
        "A completed run's result was lost with the worker holding it, before it was fetched.",
    )
    UPSTREAM_RESULT = (
        "upstream-result",
        "The result of an upstream run this one depends on could not be fetched.",
    )
    RESOURCES_UNAVAILABLE = (
        "resources-unavailable",
        "No worker of the backend has the resources the task asks for.",
    )
    INVALID_OPTIONS = ("invalid-options", "The backend refused the task's options.")
    CANCELLED_EXTERNALLY = (
        "cancelled-externally",
        "Something outside conveyor cancelled the run's work on the backend.",
    )

    def __str__(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"CrashReason.{self.name}"

    @classmethod
    def coerce(cls, reason: CrashReason | str) -> CrashReason | str:
        """
        The member for ``reason``; an unknown string is kept as it is (third parties may use
        their own), and logged once per string so that a typo shows.
        """
        if isinstance(reason, CrashReason):
            return reason
        try:
            return cls(reason)
        except ValueError:
            if reason not in _UNKNOWN_REASONS:
                _UNKNOWN_REASONS.add(reason)
                logging.getLogger("conveyor").warning(
                    "Crash reason %r is not a conveyor.CrashReason; use one of: %s.",
                    reason,
                    ", ".join(m.value for m in cls),
                )
            return reason


_UNKNOWN_REASONS: set[str] = set()


class ResultRef(Generic[T]):
    """
    A result that lives elsewhere (a Dask worker, the Ray object store) until asked for.

    Runners that keep results remote store a subclass in :attr:`State.data`;
    :meth:`State.result` calls :meth:`get`, so the value crosses to the driver only when the user
    asks for it.
    """

    __slots__ = ()

    def get(self) -> T:
        """
        Fetch and return the value; raise :class:`~conveyor.CrashedRun` if it cannot be had.
        """
        raise NotImplementedError

    @classmethod
    def get_many(cls, refs: list[ResultRef[T]]) -> list[T | BaseException]:
        """
        Fetch several values of this class at once (one round trip where the backend allows);
        each item is the value, or the exception :meth:`get` would raise. The default calls
        :meth:`get` for each.
        """
        out: list[T | BaseException] = []
        for ref in refs:
            try:
                out.append(ref.get())
            except Exception as exc:
                out.append(exc)
        return out


def _now() -> datetime:
    return datetime.now(timezone.utc)


@attrs.frozen(repr=False, eq=True)
class State(Generic[T]):
    """
    Where a run is, as an immutable value.

    ``data`` is the result of a COMPLETED state, or the exception of a FAILED or CRASHED one.
    ``reason`` is a short tag for CRASHED, CANCELLED and TimedOut states (``worker-died``,
    ``backend-lost``, ``stopped``, ...), and the cache key of a ``Cached`` state; ``traceback`` is the remote traceback as text, when the
    error happened in another process.
    """

    type: StateType
    name: str
    message: str = attrs.field(default="", converter=shorten)
    data: Any = attrs.field(default=None, eq=False)
    reason: str | None = None
    traceback: str | None = attrs.field(default=None, eq=False)
    timestamp: datetime = attrs.field(factory=_now, eq=False)

    def __repr__(self) -> str:
        msg = f", message={self.message!r}" if self.message else ""
        return f"<State {self.name} ({self.type.value}){msg}>"

    def is_pending(self) -> bool:
        """Whether the run has not started yet (including ``Retrying``)."""
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        """Whether the run is running."""
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        """Whether the run finished and returned a value."""
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        """Whether the user's code raised or ran past its timeout (includes ``TimedOut``)."""
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        """Whether the infrastructure failed the run."""
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        """Whether the run was cancelled."""
        return self.type is StateType.CANCELLED

    def is_final(self) -> bool:
        """Whether the state is final; a final state never changes."""
        return self.type in FINAL_TYPES

    def exception(self) -> BaseException | None:
        """
        The exception a FAILED, CRASHED or CANCELLED state would raise, or None otherwise.
        """
        if self.type is StateType.COMPLETED or not self.is_final():
            return None
        if isinstance(self.data, BaseException):
            return self.data
        if self.type is StateType.CRASHED:
            return CrashedRun(self.message or "The run crashed.", self.reason)
        if self.type is StateType.CANCELLED:
            return CancelledRun(self.message or "The run was cancelled.")
        if self.name == "TimedOut":
            return TimedOutRun(self.message or "The run timed out.")
        return ConveyorError(self.message or f"The run ended {self.name}.")

    def result(self, raise_on_failure: bool = True) -> Any:
        """
        Return the run's value.

        For a FAILED, CRASHED or CANCELLED state, raise its exception, or return it when
        ``raise_on_failure`` is False. Raises :class:`~conveyor.ConveyorError` for a state that
        is not final yet.
        """
        if self.type is StateType.COMPLETED:
            data = self.data
            return data.get() if isinstance(data, ResultRef) else data
        if not self.is_final():
            msg = f"The run is {self.name} and has no result yet; wait for it to finish first."
            raise ConveyorError(msg)
        exc = self.exception()
        if raise_on_failure:
            assert exc is not None
            raise exc
        return exc


def Pending(message: str = "", *, name: str = "Pending") -> State[Any]:
    """A run that waits to start."""
    return State(StateType.PENDING, name, message)


def Retrying(message: str = "") -> State[Any]:
    """A run whose attempt failed and that waits to run again."""
    return State(StateType.PENDING, "Retrying", message)


def Running(message: str = "") -> State[Any]:
    """A run that is executing."""
    return State(StateType.RUNNING, "Running", message)


def Completed(data: Any = None, message: str = "") -> State[Any]:
    """A run that returned ``data``."""
    return State(StateType.COMPLETED, "Completed", message, data)


def Cached(data: Any, key: str) -> State[Any]:
    """A run whose result came from the result store; ``reason`` holds its cache key."""
    return State(StateType.COMPLETED, "Cached", f"Cache hit {key}.", data, key)


def Failed(
    exc: BaseException | None = None,
    message: str = "",
    *,
    traceback: str | None = None,
    name: str = "Failed",
) -> State[Any]:
    """A run whose code raised ``exc``."""
    if not message and exc is not None:
        message = describe(exc)
    return State(StateType.FAILED, name, message, exc, None, traceback)


def TimedOut(message: str, *, stopped: bool) -> State[Any]:
    """A run that ran past its timeout; ``stopped`` says whether its work was stopped."""
    reason = "stopped" if stopped else "not-stopped"
    return State(StateType.FAILED, "TimedOut", message, TimedOutRun(message), reason)


def NotRun(message: str) -> State[Any]:
    """A run that never started because a run it depends on did not complete."""
    return State(StateType.FAILED, "NotRun", message, UpstreamFailedError(message), "upstream")


def Crashed(
    message: str,
    *,
    reason: CrashReason | str = CrashReason.BACKEND_ERROR,
    exc: BaseException | None = None,
    traceback: str | None = None,
) -> State[Any]:
    """A run that the infrastructure failed; ``reason`` says how (a :class:`CrashReason`)."""
    reason = CrashReason.coerce(reason)
    error = CrashedRun(message, reason)
    error.__cause__ = exc
    return State(StateType.CRASHED, "Crashed", message, error, reason, traceback)


def Cancelled(message: str = "", *, stopped: bool | None = None) -> State[Any]:
    """A run that was cancelled; ``stopped`` says whether running work was stopped."""
    reason = None if stopped is None else ("stopped" if stopped else "not-stopped")
    return State(StateType.CANCELLED, "Cancelled", message, CancelledRun(message), reason)
