"""
The task-run engine: :class:`TaskRun`, the state machine of one run, and :class:`RunOwner`, what
it reports to (the flow run).
"""

from __future__ import annotations

from conveyor._engine.task_run import RunOwner, TaskRun

__all__ = ["RunOwner", "TaskRun"]
