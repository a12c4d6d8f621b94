"""
The hooks a conveyor plugin can implement. Every hook name starts with ``conveyor_``.

A plugin is a module or object with functions marked ``@conveyor.hookimpl``, registered through
an entry point in the group ``conveyor``::

    [project.entry-points.conveyor]
    mine = "conveyor_mine.plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from conveyor.flow_run_info import FlowRunInfo
    from conveyor.futures import RunFuture
    from conveyor.plugins.registry import RunnerRegistry
    from conveyor.states import State

__all__ = [
    "conveyor_flow_run_finished",
    "conveyor_flow_run_started",
    "conveyor_register_runners",
    "conveyor_task_run_state_changed",
    "hookimpl",
    "hookspec",
]

hookspec = pluggy.HookspecMarker("conveyor")
hookimpl = pluggy.HookimplMarker("conveyor")


@hookspec
def conveyor_register_runners(registry: RunnerRegistry) -> None:
    """
    Add runner classes to ``registry`` with ``registry.add(RunnerClass)``.

    Fires once per plugin host, when it loads its plugins (the first time a runner is looked up
    by name, or ``conveyor runners`` runs), for one plugin at a time. Import nothing heavy here:
    import your backend (``distributed``, ``ray``) when the runner starts. An exception here
    marks this plugin broken and drops every runner it added; the other plugins still load.
    """


@hookspec
def conveyor_task_run_state_changed(
    future: RunFuture[Any], old: State[Any], new: State[Any]
) -> None:
    """
    A task run moved from ``old`` to ``new``.

    Fires after each change (Pending -> Running -> Completed, Retrying, ...), in the thread that
    made it, which may be a worker thread: keep it quick and thread-safe. The run's name is
    ``future.name``. Exceptions are logged and do not affect the run.
    """


@hookspec
def conveyor_flow_run_started(flow_run: FlowRunInfo) -> None:
    """
    A flow run started: its runner is started and its body is about to run.

    Fires in the thread that called the flow. ``flow_run`` is the run's frozen record, not the
    live run: ``flow_run.name``, ``flow_run.id`` and ``flow_run.flow_name`` say which run,
    ``flow_run.runner_name`` and ``flow_run.runner`` which runner (read it; never start or stop
    it). Exceptions are logged and do not affect the run.
    """


@hookspec
def conveyor_flow_run_finished(flow_run: FlowRunInfo, state: State[Any]) -> None:
    """
    A flow run reached its final ``state``: every task run it submitted is final and its runner
    is stopped. Fires in the thread that called the flow, with the same frozen record as
    ``conveyor_flow_run_started``. Exceptions are logged and do not affect the run.
    """
