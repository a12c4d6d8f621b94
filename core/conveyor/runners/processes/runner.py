"""
The ``processes`` runner: tasks on a pool of worker processes of this machine.

It is configuration until started (importing it imports no multiprocessing, so listing the
runners stays cheap); :meth:`ProcessesRunner.on_start` starts the workers, and
:meth:`ProcessesRunner.on_stop` ends every process it started: its workers, and the forkserver
and resource tracker of multiprocessing when it was the one to start them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from conveyor import validators
from conveyor.exceptions import ConfigError
from conveyor.runners.processes import settings as rules
from conveyor.runners.protocol import Capabilities, ConcurrencyType, Runner

if TYPE_CHECKING:
    from conveyor.runners.attempt import Attempt
    from conveyor.runners.processes.pool import WorkerPool

__all__ = ["ProcessesRunner"]

# How long the workers may take to get ready (import the main script, run the initializer).
START_TIMEOUT = 60.0


@attrs.define(kw_only=True, eq=True)
class ProcessesRunner(Runner):
    """
    Runs each task attempt in one of ``max_workers`` worker processes, which are reused from
    run to run; async tasks run on an event loop inside the worker.

    Options:

    - ``max_workers``: the number of worker processes (default: the CPUs this process may use).
    - ``start_method``: how workers start, ``"forkserver"`` (the default on Linux: forked from
      a server process that has imported conveyor) or ``"spawn"`` (a fresh interpreter; the
      default elsewhere). ``"fork"`` is refused: it copies the driver's threads' locks.
    - ``max_tasks_per_child``: replace a worker after this many runs (default: never).
    - ``initializer``, ``initargs``: a callable, or its dotted name (``"pkg.mod:func"``), that
      each worker calls with ``initargs`` before it runs a task.
    - ``memory_limit``: the address space each worker may use (Linux ``RLIMIT_AS``), in bytes or
      as ``"512 MiB"``; a run that needs more ends CRASHED ``oom-killed``.
    - ``cancel_grace_seconds``: how long a cancelled or timed-out run's worker has to stop
      after its stop signal (SIGUSR1) before it is killed (default 1 s).

    A run whose worker dies ends CRASHED, alone: the worker is replaced and every other run goes
    on. Timeouts and ``cancel()`` stop running work by ending its worker.
    """

    name = "processes"
    concurrency = ConcurrencyType.PARALLEL
    capabilities = Capabilities(hard_timeouts=True, cancel_running=True, isolation=True)

    max_workers: int = attrs.field(
        factory=rules.default_max_workers,
        validator=validators.whole_number(minimum=1, hint="the default is the number of CPUs"),
    )
    start_method: str = attrs.field(
        factory=rules.default_start_method, validator=rules.check_start_method
    )
    max_tasks_per_child: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            validators.whole_number(minimum=1, hint="or None to keep workers for ever")
        ),
    )
    initializer: Callable[..., object] | str | None = attrs.field(
        default=None, validator=rules.check_initializer
    )
    initargs: tuple[Any, ...] = attrs.field(
        default=(),
        converter=rules.to_tuple,
        validator=validators.Check(
            lambda v: isinstance(v, tuple), "give a list or tuple of arguments"
        ),
    )
    memory_limit: int | str | None = attrs.field(default=None, validator=rules.check_memory_limit)
    cancel_grace_seconds: float = attrs.field(default=1.0, validator=validators.seconds())

    _pool: WorkerPool | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _claimed: bool = attrs.field(default=False, init=False, eq=False, repr=False)
    _stopping: bool = attrs.field(default=False, init=False, eq=False, repr=False)

    def on_start(self) -> None:
        import multiprocessing  # deferred: needed once the runner starts, not to list it

        # Deferred, as multiprocessing: the pool and the envelope.
        from conveyor.runners.processes import bootstrap, helpers
        from conveyor.runners.processes.pool import WorkerPool
        from conveyor.runners.remote import PackError, dumps
        from conveyor.runners.remote.pickling import cloudpickle

        if bootstrap.importing_main():
            if multiprocessing.current_process().name.startswith(bootstrap.WORKER_NAME):
                os._exit(bootstrap.EXIT_UNGUARDED)  # the driver says why, once
            raise bootstrap.unguarded_error(bootstrap.main_script())
        owner = type(self).__name__
        try:
            cloudpickle()  # tasks travel to the workers by value: without it, none could
        except PackError as exc:
            raise ConfigError(f"{owner}: {exc}") from None
        initializer = self.initializer
        if isinstance(initializer, str):
            rules.resolve_initializer(initializer, owner)  # an import error, here and now
        try:
            settings = dumps(
                (
                    initializer,
                    self.initargs,
                    rules.memory_limit_bytes(self.memory_limit),
                    self.max_tasks_per_child,
                )
            )
        except Exception as exc:
            msg = (
                f"{owner}: the initializer or its initargs cannot be pickled for the workers "
                f"({type(exc).__name__}: {exc}); give importable values, or the "
                "initializer's dotted name."
            )
            raise ConfigError(msg) from exc
        context = multiprocessing.get_context(self.start_method)
        helpers.claim(self.start_method)
        self._claimed = True
        self._stopping = False
        self._pool = WorkerPool(
            context,
            size=self.max_workers,
            settings=settings,
            max_tasks=self.max_tasks_per_child,
            memory_limit=rules.memory_limit_bytes(self.memory_limit),
            grace=self.cancel_grace_seconds,
            runner_name=self.name,
        )
        self._pool.start(START_TIMEOUT)

    def on_stop(self) -> None:
        # A second call (a Ctrl-C interrupted the first) kills what is left at once.
        hurry, self._stopping = self._stopping, True
        pool = self._pool
        if pool is not None:
            pool.close(hurry=hurry)
            self._pool = None
        if self._claimed:
            from conveyor.runners.processes import helpers  # deferred: as in on_start

            self._claimed = False
            helpers.release()

    def execute(self, attempt: Attempt) -> None:
        # Deferred: the envelope (pickling) is needed once attempts run, not to list the runner.
        from conveyor.runners.remote import pack_or_crash

        packed = pack_or_crash(attempt)
        if packed is None:  # already CRASHED argument-serialization: its body never runs
            return
        pool = self._pool
        assert pool is not None
        pool.submit(attempt, packed[0])

    def cancel(self, attempt: Attempt) -> bool:
        pool = self._pool
        return True if pool is None else pool.cancel(attempt)
