"""
The record of a flow run: what the end-of-run report, ``conveyor run --json`` and the HTML run
report draw.

Every flow run keeps, at the cost of a few operations per finished task run, what its summary
needs: per task name the counts by state and every run's duration, the slowest runs, the runs
that did not complete. With ``record_runs=True`` (``@flow(record_runs=True)``,
``flow.create_run(record_runs=True)``, :func:`conveyor.recording`) it also keeps one
:class:`TaskRunRecord` per task run: its attempts with their start and end times and where each
ran, and the runs it depended on.

Times are seconds on the monotonic clock; :attr:`RunRecord.wall_origin` maps them to wall-clock
time (``datetime.fromtimestamp(record.wall_origin + t)``).
"""

from __future__ import annotations

import heapq
import time
from array import array
from collections.abc import Iterator
from traceback import format_exception
from typing import Any, NamedTuple

from conveyor.exceptions import safe_str, shorten
from conveyor.states import State

__all__ = [
    "TRACEBACKS",
    "AttemptRecord",
    "Failure",
    "RunDetail",
    "RunRecord",
    "TaskRunRecord",
    "TaskSummary",
    "failure_of",
    "origin_line",
]

#: How many of the slowest task runs a record keeps.
SLOWEST = 5
#: How many failures keep their traceback text, with ``record_runs`` on.
TRACEBACKS = 200


class AttemptRecord(NamedTuple):
    """
    One attempt of a task run: its number (1, 2, ...), when it started and ended (monotonic
    seconds; ``start`` is None for an attempt that never started), where it ran (``thread
    conveyor-worker-2``, ``dask worker tcp://127.0.0.1:40123``, ...) and how it ended.
    """

    number: int
    start: float | None
    end: float
    where: str | None
    state: str


class TaskRunRecord(NamedTuple):
    """
    One task run, kept with ``record_runs=True``: its names, final state, when it was
    submitted, its attempts, and the ids of the runs whose futures it was given.
    """

    id: str
    name: str
    task_name: str
    state: str
    state_type: str
    message: str
    reason: str | None
    submitted: float
    end: float
    attempts: tuple[AttemptRecord, ...]
    upstream: tuple[str, ...] = ()

    @property
    def start(self) -> float | None:
        """When its first attempt started, or None if it never started."""
        starts = [a.start for a in self.attempts if a.start is not None]
        return starts[0] if starts else None

    @property
    def duration(self) -> float | None:
        """Seconds from its first start to its end, or None if it never started."""
        start = self.start
        return None if start is None else self.end - start


class Failure(NamedTuple):
    """
    A task run (or the flow body) that did not complete: its message and where it raised, and
    its traceback as text when the flow run records its runs (``record_runs``).
    """

    name: str
    task_name: str
    state: str
    message: str
    reason: str | None
    origin: str | None
    traceback: str | None = None


class RunDetail:
    """
    The engine's notes on one task run while it runs, with ``record_runs`` on: when it was
    submitted, the runs it depends on, and each attempt as it ends.
    """

    __slots__ = ("attempts", "current_start", "submitted", "upstream")

    def __init__(self) -> None:
        self.submitted = time.monotonic()
        self.attempts: list[AttemptRecord] = []
        self.current_start: float | None = None
        self.upstream: tuple[str, ...] = ()

    def attempt_over(self, number: int, now: float, where: str | None, state: str) -> None:
        """Attempt ``number`` ended ``state`` at ``now``, having run ``where``."""
        self.attempts.append(AttemptRecord(number, self.current_start, now, where, state))
        self.current_start = None

    def finish(
        self, run_id: str, name: str, task_name: str, state: State[Any], now: float
    ) -> TaskRunRecord:
        """The run's record, now that it ended in ``state``."""
        reason = state.reason
        return TaskRunRecord(
            run_id,
            name,
            task_name,
            state.name,
            state.type.value,
            state.message,
            None if reason is None else str(reason),
            self.submitted,
            now,
            tuple(self.attempts),
            self.upstream,
        )


class TaskSummary:
    """Per task name: runs by state name, and the duration of every run that started."""

    __slots__ = ("durations", "states", "task_name")

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name
        self.states: dict[str, int] = {}
        self.durations: array[float] = array("d")

    def __repr__(self) -> str:
        return f"<TaskSummary {self.task_name}: {self.states}>"

    @property
    def runs(self) -> int:
        """How many runs of this task are final."""
        return sum(self.states.values())

    @property
    def median(self) -> float | None:
        """The median duration in seconds, or None if no run started."""
        if not self.durations:
            return None
        ordered = sorted(self.durations)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    @property
    def longest(self) -> float | None:
        """The longest duration in seconds, or None if no run started."""
        return max(self.durations) if self.durations else None


class RunRecord:
    """
    What happened in one flow run. Filled while it runs; complete once the flow call returned.

    ``state`` is the flow run's final state (None while it runs), ``tasks`` the summaries per
    task name, ``slowest`` the slowest runs as ``(seconds, run name, task name)``, longest first,
    ``failures`` the runs that did not complete (and the flow body's error, if it raised),
    ``task_runs`` one record per task run when ``record_runs`` was on (else None).
    """

    def __init__(
        self,
        flow_run_id: str,
        flow_run_name: str,
        flow_name: str,
        runner_name: str,
        runner_options: dict[str, Any] | None = None,
        *,
        task_runs: list[TaskRunRecord] | None = None,
    ) -> None:
        self.flow_run_id = flow_run_id
        self.flow_run_name = flow_run_name
        self.flow_name = flow_name
        self.runner_name = runner_name
        self.runner_options: dict[str, Any] = dict(runner_options or {})
        self.wall_origin = time.time() - time.monotonic()
        self.started: float | None = None
        self.ended: float | None = None
        self.state: State[Any] | None = None
        self.dashboard: str | None = None
        self.tasks: dict[str, TaskSummary] = {}
        self.failures: list[Failure] = []
        self.task_runs = task_runs
        self._slowest: list[tuple[float, str, str]] = []
        self._floor = -1.0  # the shortest of the slowest runs kept, once there are SLOWEST

    def __repr__(self) -> str:
        state = "running" if self.state is None else self.state.name
        return f"<RunRecord {self.flow_run_name} {state}>"

    @property
    def elapsed(self) -> float | None:
        """Seconds from the runner's start to the flow run's end, or None before that."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    @property
    def slowest(self) -> list[tuple[float, str, str]]:
        """The slowest task runs, ``(seconds, run name, task name)``, longest first."""
        return sorted(self._slowest, reverse=True)

    def counts(self) -> dict[str, int]:
        """Final task runs by state name, over every task."""
        total: dict[str, int] = {}
        for summary in self.tasks.values():
            for name, n in summary.states.items():
                total[name] = total.get(name, 0) + n
        return dict(sorted(total.items()))

    def iter_task_runs(self) -> Iterator[TaskRunRecord]:
        """The per-run records (empty unless ``record_runs`` was on), in the order they ended."""
        return iter(self.task_runs or ())

    # -- filled by the flow run, under its lock ---------------------------------------------

    def count(self, task_name: str, run_name: str, state_name: str, duration: float | None) -> None:
        """A task run ended ``state_name`` after ``duration`` seconds (None: never started)."""
        summary = self.tasks.get(task_name)
        if summary is None:
            summary = self.tasks[task_name] = TaskSummary(task_name)
        states = summary.states
        states[state_name] = states.get(state_name, 0) + 1
        if duration is not None:
            summary.durations.append(duration)
            if duration > self._floor:
                self._keep_slow(duration, run_name, task_name)

    def _keep_slow(self, duration: float, run_name: str, task_name: str) -> None:
        slowest = self._slowest
        if len(slowest) < SLOWEST:
            heapq.heappush(slowest, (duration, run_name, task_name))
        else:
            heapq.heapreplace(slowest, (duration, run_name, task_name))
        if len(slowest) == SLOWEST:
            self._floor = slowest[0][0]


def origin_line(exc: BaseException | None, traceback: str | None = None) -> str | None:
    """
    Where an error was raised, as ``file.py:12 in fn``: the innermost frame of its traceback
    (the remote traceback text, when the error happened in another process), or None.
    """
    if traceback:
        lines = [ln.strip() for ln in traceback.splitlines() if ln.strip().startswith("File ")]
        if lines:
            return _frame_text(lines[-1])
    tb = getattr(exc, "__traceback__", None)
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{_short_path(code.co_filename)}:{tb.tb_lineno} in {code.co_name}"


def _frame_text(line: str) -> str:
    # 'File "/x/pipeline.py", line 12, in fetch' -> 'pipeline.py:12 in fetch'
    try:
        path_part, line_part, fn_part = line.split(", ", 2)
        path = path_part[len("File ") :].strip('"')
        return f"{_short_path(path)}:{line_part.split()[-1]} {fn_part}"
    except ValueError:
        return shorten(line, 200)


def _short_path(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def failure_of(
    name: str, task_name: str, state: State[Any], *, with_traceback: bool = False
) -> Failure:
    """
    The :class:`Failure` entry for a run (or flow body) that ended in ``state``; with
    ``with_traceback``, its traceback as text (the remote one, or the exception's).
    """
    data = state.data if isinstance(state.data, BaseException) else None
    cause = data.__cause__ if data is not None and data.__cause__ is not None else data
    text = None
    if with_traceback:
        text = state.traceback
        if text is None and cause is not None and cause.__traceback__ is not None:
            text = "".join(format_exception(cause))
    return Failure(
        name=name,
        task_name=task_name,
        state=state.name,
        message=safe_str(state.message),
        reason=None if state.reason is None else str(state.reason),
        origin=origin_line(cause, state.traceback),
        traceback=text,
    )
