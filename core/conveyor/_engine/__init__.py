"""
The task-run engine: :class:`TaskRun`, the state machine of one run, and :class:`RunOwner`, what
it reports to (the flow run).
"""

from __future__ import annotations

from conveyor._engine.owner import RunOwner
from conveyor._engine.task_run import TaskRun

__all__ = ["RunOwner", "TaskRun"]
