"""
What Ray returned for an attempt, as the attempt's state: conveyor's outcome (with a value kept
in the object store, or inlined), or an error of Ray's, classified; and worker deaths held back
a moment, to tell them from the loss of the whole cluster.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import attrs

from conveyor import CrashReason
from conveyor.runners import Attempt
from conveyor.runners.remote import Outcome, report_outcome
from conveyor_ray._faults import Fault, classify
from conveyor_ray._results import RayResult
from conveyor_ray._session import Session

__all__ = ["DEATH_SETTLE", "Cluster", "HeldDeaths", "crash_quietly", "report"]

logger = logging.getLogger("conveyor.ray")

# How long a worker death waits to be told apart from the loss of the whole cluster.
DEATH_SETTLE = 1.0

_OK = Outcome("ok")


class Cluster(Protocol):
    """What a report asks of the runs' owner: whether the cluster is gone, and to say it is."""

    def lost_reason(self, check_gcs: bool = False) -> str | None:
        """Why the cluster is gone, or None while it is there."""

    def on_lost(self, why: str) -> None:
        """The cluster is gone: crash every run in flight."""


def crash_quietly(
    attempt: Attempt, message: str, *, reason: CrashReason, exc: BaseException | None = None
) -> None:
    """Crash ``attempt``; if that raises, log it: the dispatcher must go on for the others."""
    try:
        attempt.crash(message, reason=reason, exc=exc)
    except Exception:
        logger.exception("conveyor-ray could not crash %s.", attempt)


class HeldDeaths:
    """Worker deaths held back for DEATH_SETTLE seconds, each with its attempt and fault."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: list[tuple[float, Attempt, Fault, BaseException]] = []

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, attempt: Attempt, fault: Fault, exc: BaseException) -> None:
        """Crash ``attempt`` with ``fault`` in DEATH_SETTLE seconds, unless the cluster goes."""
        self._held.append((time.monotonic() + DEATH_SETTLE, attempt, fault, exc))

    def next_due(self) -> float:
        """When the first held death is due (there is one)."""
        return min(d[0] for d in self._held)

    def settle(self, now: float, lost: str | None) -> None:
        """Crash the deaths due by ``now``; every one as the cluster's loss if ``lost``."""
        settled: list[tuple[float, Attempt, Fault, BaseException]] = []
        held: list[tuple[float, Attempt, Fault, BaseException]] = []
        for death in self._held:
            (settled if death[0] <= now or lost is not None else held).append(death)
        self._held = held
        for _due, attempt, fault, exc in settled:
            if lost is not None:
                message = f"{lost} ({fault.message})"
                crash_quietly(attempt, message, reason=CrashReason.BACKEND_LOST, exc=exc)
            else:
                crash_quietly(attempt, fault.message, reason=fault.reason, exc=exc)

    def crash_all(self) -> None:
        """Crash every held death now, as its fault says (the runner is stopping)."""
        held, self._held = self._held, []
        for _due, attempt, fault, exc in held:
            attempt.crash(fault.message, reason=fault.reason, exc=exc)


def _mark_handled(ray: Any, value_ref: Any) -> None:
    # The value ref holds the same error; fetch it once so Ray does not log it as unhandled.
    try:
        ray.get(value_ref, timeout=0)
    except BaseException:
        pass


def report(
    attempt: Attempt,
    value_ref: Any,
    data: Any,
    *,
    ray: Any,
    session: Session,
    cluster: Cluster,
    held: HeldDeaths,
) -> None:
    """
    Report what Ray returned for ``attempt`` (``data``: the first return object, or the error
    fetching it gave), whose value is the object ``value_ref``.
    """
    if attempt.finished:
        return  # timed out or cancelled: the engine already decided
    if type(data) is list and len(data) == 3 and (data[0] is None or isinstance(data[0], Outcome)):
        outcome, inlined, small = data
        if outcome is None:  # ok, and no log records
            outcome = _OK
        value: Any = None
        if inlined:
            value = small
        elif outcome.status == "ok":
            value = RayResult(value_ref, attempt.name, session)
        report_outcome(attempt, outcome, value)
        return
    if isinstance(data, BaseException):
        _mark_handled(ray, value_ref)
        fault = classify(data, ray, attempt.name)
        if not fault.lost and not fault.cancelled:
            # A worker that died with the whole cluster is the cluster's loss, not its own.
            lost = cluster.lost_reason(check_gcs=True)
            if lost is not None:
                fault = attrs.evolve(fault, lost=True, message=f"{lost} ({fault.message})")
            elif fault.reason is CrashReason.WORKER_DIED:
                # Workers often die a moment before the GCS when a whole cluster goes down:
                # decide once the GCS had time to show it.
                held.hold(attempt, fault, data)
                return
        if fault.lost:
            cluster.on_lost(fault.message)
            attempt.crash(fault.message, reason=CrashReason.BACKEND_LOST, exc=data)
            return
        if fault.cancelled:
            message = f"{attempt.name!r} was cancelled in Ray, not by conveyor."
            attempt.crash(message, reason=CrashReason.CANCELLED_EXTERNALLY, exc=data)
            return
        attempt.crash(fault.message, reason=fault.reason, exc=data)
        return
    attempt.crash(
        f"Ray returned {type(data).__name__} instead of conveyor's outcome for {attempt.name!r}.",
        reason=CrashReason.BACKEND_ERROR,
    )
