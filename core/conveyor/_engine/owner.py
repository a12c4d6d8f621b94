"""
What a task run belongs to: the interface the engine needs from a flow run. Its methods take
the :class:`~conveyor._engine.task_run.TaskRun` as ``run`` (typed ``Any`` here, so that this
module stays below the engine).
"""

from __future__ import annotations

from typing import Any, Protocol

from conveyor.states import State

__all__ = ["RunOwner"]


class RunOwner(Protocol):
    """
    What a task run belongs to (the flow run): its id (task run ids are ``{id}.{n}``), its name
    (for the attempts' log records), whether its runs keep a
    :class:`~conveyor.run_record.TaskRunRecord` each, and where state changes go.
    """

    id: str
    name: str
    record_runs: bool

    def next_task_run_name(self, task_name: str) -> str:
        """A new run name for a run of ``task_name`` (``fetch-3``)."""
        ...

    def on_task_run_state(self, run: Any, old: State[Any], new: State[Any]) -> None:
        """``run`` moved from ``old`` to ``new``."""

    def warn_not_stopped(self, run: Any, message: str) -> None:
        """``run`` timed out and its runner could not stop its work."""
