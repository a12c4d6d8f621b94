"""
What the finished Dask future of a run means for that run, as one table (:func:`classify`;
the plugin README's fault table says it in prose): the task's own errors come back as the
envelope's outcome; anything Dask raised is infrastructure, and its
:class:`~conveyor.CrashReason` says which part failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
from typing import Any, Protocol

import attrs

from conveyor import CrashReason
from conveyor.runners import Attempt
from conveyor.runners.remote import Outcome
from conveyor_dask import _internals
from conveyor_dask._handle import RunHandle
from conveyor_dask._worker import TaskOutcome

__all__ = ["MAX_UNSTARTED_RESUBMITS", "Action", "Evidence", "Verdict", "backend_reason", "classify"]

#: A run whose worker died before its body started is resubmitted at most this many times.
MAX_UNSTARTED_RESUBMITS = 2


class Action(enum.Enum):
    """What the runner does with a finished run."""

    COMPLETE = "complete"  # it returned: keep its result (``kind`` is its type, if known)
    IGNORE = "ignore"  # conveyor cancelled it, or the engine finished it first
    REPORT = "report"  # the envelope's outcome: FAILED, or CRASHED as the worker saw it
    RESUBMIT = "resubmit"  # its worker died before its body started: run it elsewhere
    CRASH = "crash"


@attrs.frozen
class Verdict:
    """The :class:`Action` for a finished run, with what it needs."""

    action: Action
    reason: CrashReason | None = None
    message: str = ""
    exc: BaseException | None = None
    outcome: Outcome | None = None
    kind: Any = None


_IGNORE = Verdict(Action.IGNORE)
_LOST_RESULT = Verdict(Action.COMPLETE)


class Evidence(Protocol):
    """What the driver can learn about the cluster; each answer is looked up only when asked."""

    @property
    def stopping(self) -> bool:
        """Whether the runner is stopping."""

    def backend_gone(self) -> bool:
        """Whether the cluster or the scheduler connection is going or gone."""

    def result_was_lost(self, key: str) -> bool:
        """Whether the scheduler saw the completed result of ``key`` lost."""

    def started_there(self, key: str, address: str | None) -> bool:
        """Whether the worker at ``address`` logged the start of ``key``'s body."""

    def killed_for_memory(self, address: str | None) -> float | None:
        """The memory of the worker at ``address`` if its nanny restarted it for that."""


def _crash(reason: CrashReason, message: str, exc: BaseException | None = None) -> Verdict:
    return Verdict(Action.CRASH, reason, message, exc)


def _lost(evidence: Evidence, name: str, message: str, exc: BaseException | None = None) -> Verdict:
    """The cluster went away under run ``name``: by conveyor's own stop, or on its own."""
    if evidence.stopping:
        return _crash(
            CrashReason.RUNNER_STOPPED,
            f"Runner 'dask' stopped while {name!r} was still running.",
            exc,
        )
    return _crash(CrashReason.BACKEND_LOST, message, exc)


def classify(attempt: Attempt, handle: RunHandle, cancelled: bool, evidence: Evidence) -> Verdict:
    """
    The verdict on the finished future of ``attempt`` (submitted as ``handle``); ``cancelled``
    says whether conveyor cancelled it. May wait (up to 30 s) for the error of an erred future.
    """
    future = handle.future
    name = attempt.name
    status = future.status
    if status == "finished":
        return Verdict(Action.COMPLETE, kind=future.type)
    if status == "cancelled" and not cancelled and evidence.result_was_lost(handle.key):
        # Its result was lost with its worker before this callback ran: it finished all the
        # same, so it is COMPLETED, and fetching its value raises result-lost.
        return _LOST_RESULT
    if cancelled or attempt.finished:
        return _IGNORE
    if status == "cancelled":
        if any(getattr(d, "status", "finished") != "finished" for d in handle.deps):
            return _crash(
                CrashReason.UPSTREAM_RESULT,
                f"An upstream result of {name!r} was lost with its Dask worker, so it could "
                "not run (conveyor does not let Dask recompute completed runs).",
            )
        return _lost(
            evidence,
            name,
            f"The Dask cluster lost {name!r}: the scheduler connection was lost or the "
            "cluster was closed.",
        )
    try:
        exc = future.exception(timeout=30)
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):  # pragma: no cover
            raise
        return _lost(
            evidence, name, f"The Dask cluster lost {name!r} ({type(err).__name__}: {err})."
        )
    return _classify_error(name, handle, exc, evidence)


def _classify_error(
    name: str, handle: RunHandle, exc: BaseException | None, evidence: Evidence
) -> Verdict:
    from distributed import KilledWorker  # defers importing distributed

    if isinstance(exc, TaskOutcome):
        return Verdict(Action.REPORT, outcome=exc.outcome)
    if isinstance(exc, KilledWorker) and evidence.backend_gone():
        return _lost(evidence, name, f"The Dask cluster shut down while {name!r} ran ({exc}).", exc)
    if isinstance(exc, KilledWorker):
        dead = _internals.killed_worker_address(exc)
        if (
            handle.tries < MAX_UNSTARTED_RESUBMITS
            and not evidence.stopping
            and not evidence.started_there(handle.key, dead)
        ):
            # Its worker died before this run's body started (it was queued behind the
            # culprit): the body never ran, so run it elsewhere.
            return Verdict(Action.RESUBMIT)
        rss = evidence.killed_for_memory(dead)
        if rss is not None:
            return _crash(
                CrashReason.OOM_KILLED,
                f"The Dask worker running {name!r} was restarted by its nanny for exceeding "
                f"its memory limit (it used {rss / 2**20:.0f} MiB) ({exc}).",
                exc,
            )
        return _crash(
            CrashReason.WORKER_DIED,
            f"The Dask worker running {name!r} died ({exc}). The task may have called "
            "os._exit, been killed by a signal, or exceeded the worker's memory limit.",
            exc,
        )
    if exc is None:  # pragma: no cover
        return _crash(
            CrashReason.BACKEND_ERROR, f"Dask reported {name!r} as erred without an error."
        )
    return _crash(backend_reason(exc), f"Dask failed {name!r}: {type(exc).__name__}: {exc}", exc)


def backend_reason(exc: BaseException) -> CrashReason:
    """BACKEND_LOST if ``exc`` says the scheduler connection or the client is gone."""
    lost = (
        OSError,  # CommClosedError among them
        TimeoutError,
        concurrent.futures.CancelledError,  # distributed's CancelledError, FutureCancelledError
        asyncio.CancelledError,
        _internals.closed_client_error(),
    )
    if isinstance(exc, lost):
        return CrashReason.BACKEND_LOST
    return CrashReason.BACKEND_ERROR
