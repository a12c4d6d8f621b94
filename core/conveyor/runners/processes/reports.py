"""
What a worker's report, or its death, means for the run it had: the state the driver reports.

- A report is the envelope's outcome (FAILED for the user's exception, CRASHED for
  ``sys.exit``, serialization problems, ...), handed to ``report_outcome``. A value that was
  pickled on the worker but cannot be unpickled here is CRASHED ``result-deserialization``,
  naming its type. Under a ``memory_limit``, a ``MemoryError`` that escaped the task is CRASHED
  ``oom-killed``: the task ran out of the memory the runner gave it.
- A death is CRASHED ``worker-died`` with the exit code or the signal, or ``oom-killed`` when
  the kernel's OOM killer did it (see :mod:`~conveyor.runners.processes.deaths`). A worker the
  driver could no longer watch (its forkserver died) was killed by the driver: ``backend-lost``.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

from conveyor.runners.processes import framing
from conveyor.runners.processes.deaths import OomCounter, describe_exit
from conveyor.runners.remote import replay_records, report_outcome
from conveyor.states import CrashReason

if TYPE_CHECKING:
    from conveyor.runners.attempt import Attempt

__all__ = ["report_death", "report_result"]

logger = logging.getLogger("conveyor")


def report_result(attempt: Attempt, data: bytes, memory_limit: int | None) -> None:
    """Report the run ``attempt`` as the worker's message ``data`` says it ended."""
    type_name = "unknown"
    try:
        result = framing.unpack_result(data)
        type_name = result.type_name
        value = framing.load_value(result)
    except Exception as exc:
        attempt.crash(
            f"The task returned a value of type {type_name} that cannot be unpickled here: "
            f"{type(exc).__name__}: {exc}",
            reason=CrashReason.RESULT_DESERIALIZATION,
            exc=exc,
        )
        return
    outcome = result.outcome
    try:
        if (
            memory_limit is not None
            and outcome.status == "error"
            and outcome.error_type == "builtins.MemoryError"
        ):
            replay_records(outcome, (attempt.flow_run_name, attempt.name))
            attempt.crash(
                f"{attempt.name!r} ran out of memory: it raised MemoryError at the runner's "
                f"memory_limit of {memory_limit // 2**20} MiB (the address space of its worker "
                "process, RLIMIT_AS).",
                reason=CrashReason.OOM_KILLED,
                traceback=outcome.traceback,
            )
            return
        report_outcome(attempt, outcome, value)
    except Exception:  # an observer's or a callback's problem, never the dispatcher's
        logger.exception("Reporting the outcome of %s failed.", attempt)


def report_death(
    attempt: Attempt,
    pid: int,
    code: int | None,
    memory_limit: int | None,
    oom: OomCounter,
    *,
    lost: bool = False,
) -> None:
    """
    Report the run ``attempt`` CRASHED: its worker ``pid`` ended with exit ``code``, or, when
    ``lost``, was killed by the driver because the forkserver that watched it died.
    """
    if lost:
        attempt.crash(
            f"multiprocessing's forkserver ended while {attempt.name!r} ran, so its worker "
            f"process (pid {pid}) could no longer be watched and was killed.",
            reason=CrashReason.BACKEND_LOST,
        )
        return
    if code == -signal.SIGKILL and oom.claim():
        attempt.crash(
            f"The worker process (pid {pid}) running {attempt.name!r} was killed by the "
            f"kernel's out-of-memory killer (it died of SIGKILL as {oom.source} counted an "
            "OOM kill).",
            reason=CrashReason.OOM_KILLED,
        )
        return
    message = f"The worker process (pid {pid}) running {attempt.name!r} {describe_exit(code)}."
    if memory_limit is not None and code in (-signal.SIGSEGV, -signal.SIGABRT):
        message += (
            " It ran under a memory_limit; native code that fails to allocate memory can end a "
            "process this way."
        )
    attempt.crash(message, reason=CrashReason.WORKER_DIED)
