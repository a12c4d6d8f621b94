"""
The driver's reading of what a worker sent back: replay the task's log records, and turn the
outcome into the run's state by the one rule of :mod:`conveyor.runners.outcome`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from conveyor.exceptions import describe
from conveyor.runners.outcome import crash_message
from conveyor.runners.remote.envelope import Outcome
from conveyor.runners.remote.pickling import loads
from conveyor.states import CrashReason

if TYPE_CHECKING:
    from conveyor.runners.attempt import Attempt

__all__ = ["replay_records", "report_outcome"]


def replay_records(outcome: Outcome, names: tuple[str, str] | None = None) -> None:
    """
    Hand the task's worker-side log records to the driver's loggers; records made without the
    run's names (see ``run_call``) get ``names``.
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
    if attempt.where is None and outcome.where is not None:
        attempt.where = outcome.where
    if outcome.status == "ok":
        attempt.succeed(value)
        return
    exc: BaseException | None = None
    if outcome.error is not None:
        try:
            exc = loads(outcome.error)
        except BaseException as load_exc:  # unpickling may call anything, even sys.exit
            attempt.crash(
                f"The task raised {outcome.error_type}: {outcome.error_message}, which cannot be "
                f"unpickled here: {describe(load_exc)}",
                reason=CrashReason.RESULT_DESERIALIZATION,
                exc=load_exc if isinstance(load_exc, Exception) else None,
                traceback=outcome.traceback,
            )
            return
    if outcome.status == "error" and isinstance(exc, Exception):
        attempt.fail(exc, outcome.traceback)
        return
    if outcome.status == "error" and outcome.reason == CrashReason.RESULT_SERIALIZATION:
        attempt.crash(
            f"The task raised {outcome.error_type}: {outcome.error_message}",
            reason=CrashReason.RESULT_SERIALIZATION,
            traceback=outcome.traceback,
        )
        return
    if outcome.status == "error":
        attempt.crash(
            f"The task raised {outcome.error_type}: {outcome.error_message}, which cannot be "
            "unpickled here.",
            reason=CrashReason.RESULT_DESERIALIZATION,
            traceback=outcome.traceback,
        )
        return
    reason = outcome.reason or CrashReason.BACKEND_ERROR
    message = crash_message(reason, outcome.error_type, outcome.error_message)
    attempt.crash(message, reason=reason, exc=exc, traceback=outcome.traceback)
