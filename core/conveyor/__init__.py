"""
conveyor: write Python tasks once; run them on any backend, chosen by a name string.

>>> from conveyor import flow, task
>>> @task
... def add(x: int, y: int) -> int:
...     return x + y
>>> @flow(runner="sequential")
... def total() -> int:
...     return add.submit(1, 2).result()
>>> total()
3
"""

from __future__ import annotations

from conveyor._version import __version__
from conveyor.exceptions import (
    BackendUnavailable,
    CancelledRun,
    ConfigError,
    ConveyorError,
    CrashedRun,
    NoFlowRunError,
    PluginError,
    RunnerFailed,
    RunnerNotStartedError,
    TimedOutRun,
    UnknownRunnerError,
    UpstreamFailedError,
)
from conveyor.flow_run import FlowRun
from conveyor.flow_run_info import FlowRunInfo
from conveyor.flows import Flow, current_flow_run, flow
from conveyor.futures import RunFuture
from conveyor.plugins.hookspecs import hookimpl
from conveyor.run_logging import get_run_logger
from conveyor.runners import Attempt, Capabilities, ConcurrencyType, Runner
from conveyor.states import CrashReason, ResultRef, State, StateType
from conveyor.tasks import RunStream, Task, task, unmapped
from conveyor.waiting import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    as_completed,
    gather,
    wait,
)

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Attempt",
    "BackendUnavailable",
    "CancelledRun",
    "Capabilities",
    "ConcurrencyType",
    "ConfigError",
    "ConveyorError",
    "CrashReason",
    "CrashedRun",
    "Flow",
    "FlowRun",
    "FlowRunInfo",
    "NoFlowRunError",
    "PluginError",
    "ResultRef",
    "RunFuture",
    "RunStream",
    "Runner",
    "RunnerFailed",
    "RunnerNotStartedError",
    "State",
    "StateType",
    "Task",
    "TimedOutRun",
    "UnknownRunnerError",
    "UpstreamFailedError",
    "__version__",
    "as_completed",
    "current_flow_run",
    "flow",
    "gather",
    "get_run_logger",
    "hookimpl",
    "task",
    "unmapped",
    "wait",
]
