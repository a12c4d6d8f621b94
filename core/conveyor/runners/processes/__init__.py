"""
The ``processes`` runner: tasks on a pool of reused worker processes of this machine, each
fault attributed to the one run it hit.

Modules: :mod:`~conveyor.runners.processes.runner` (the runner, configuration until started),
:mod:`~conveyor.runners.processes.settings` (its options' rules), and, imported once it
starts, :mod:`~conveyor.runners.processes.pool` (the workers and the dispatcher),
:mod:`~conveyor.runners.processes.workers`, :mod:`~conveyor.runners.processes.startup`,
:mod:`~conveyor.runners.processes.reports`, :mod:`~conveyor.runners.processes.deaths`,
:mod:`~conveyor.runners.processes.framing`, :mod:`~conveyor.runners.processes.helpers`,
:mod:`~conveyor.runners.processes.bootstrap` and, in each worker,
:mod:`~conveyor.runners.processes.child`.
"""

from __future__ import annotations

from conveyor.runners.processes.runner import ProcessesRunner

__all__ = ["ProcessesRunner"]
