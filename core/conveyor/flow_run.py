"""
One run of a flow: its started runner, the task runs it submitted that are not final, how its
final state follows from them, and the one driver that runs a sync or an async body.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor._context import sync_caller_var
from conveyor._driver import drive, drive_async
from conveyor._engine import TaskRun
from conveyor._interrupts import watching_sigint
from conveyor._stall import StallWatch
from conveyor.exceptions import ConfigError, ConveyorError
from conveyor.flow_run_info import FlowRunInfo
from conveyor.futures import RunFuture
from conveyor.options import TaskOptions
from conveyor.run_record import TRACEBACKS, RunRecord, failure_of
from conveyor.runners._inline import loop_inline_runner
from conveyor.runners.protocol import ConcurrencyType, Runner
from conveyor.runners.sequential import SequentialRunner
from conveyor.states import FINAL_TYPES, Completed, Failed, State, StateType
from conveyor.tasks import Task

if TYPE_CHECKING:
    import asyncio

    from conveyor.caching.context import RunCache
    from conveyor.plugins.manager import PluginHost
    from conveyor.report import ReportPath

__all__ = ["FlowRun"]

logger = logging.getLogger("conveyor")


class FlowRun:
    """
    One run of a flow: its runner, and the task runs it submitted that are not final.

    Made by :meth:`conveyor.Flow.create_run`; :meth:`run` (or :meth:`run_async`) executes it
    once: start the runner, run the body, wait for every task run, stop the runner.
    """

    def __init__(
        self,
        name: str,
        body: Callable[..., Any],
        is_async: bool,
        runner: Runner,
        host: PluginHost | None,
        *,
        owns_runner: bool = True,
        record_runs: bool = False,
        log_prints: bool = False,
        progress: bool = False,
        report: Path | None = None,
    ) -> None:
        self.id = os.urandom(4).hex()
        self.name = f"{name}-{self.id}"
        self.body = body
        self.is_async = is_async
        self.runner = runner
        #: Whether this run starts and stops its runner (False: an outer flow run's, shared).
        self.owns_runner = owns_runner
        self.host = host
        self.accepting = True
        self.info = FlowRunInfo(
            id=self.id, name=self.name, flow_name=name, runner_name=runner.name, runner=runner
        )
        self._inline = SequentialRunner().start()
        self._observe = host is not None and host.observes_task_runs()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight: set[TaskRun] = set()
        self._failures: list[RunFuture[Any]] = []
        self._counters: dict[str, int] = {}
        self._warned: set[str] = set()
        self._idle_waiters: list[Callable[[], object]] = []
        self._stall = StallWatch()
        #: Whether each task run keeps a :class:`~conveyor.run_record.TaskRunRecord`.
        self.record_runs = record_runs
        #: Whether print() in the body, and in tasks that do not say, becomes log records.
        self.log_prints = log_prints
        #: Whether to show live progress (where output is a terminal or a notebook), and
        #: whether the display is removed at the end (``conveyor run``) instead of frozen.
        self.progress = progress
        self.progress_transient = False
        #: Where the HTML run report is written when the run ends (None: no report).
        self.report = report
        #: The run's caching (a :class:`~conveyor.caching.context.RunCache`), or None: off.
        self.cache: RunCache | None = None
        #: What happened in this run: the summary, and per task run with ``record_runs``.
        self.record = RunRecord(
            self.id,
            self.name,
            name,
            runner.name,
            runner.options(),
            task_runs=[] if record_runs else None,
        )
        #: (task name, old state type or None, new state type) per change, while a live
        #: progress display drains it; None otherwise, and then nothing is counted for it.
        self.events: deque[tuple[str, StateType | None, StateType]] | None = None
        self._display: Any = None

    def __repr__(self) -> str:
        return f"<FlowRun {self.name} on {self.runner.name}>"

    # -- running it -------------------------------------------------------------------------

    def run(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> State[Any]:
        """
        Execute this run once and return its final state: start its runner, run the body (an
        async body on a new event loop), wait for its task runs, stop the runner. The body's
        own exceptions end in the state; ``KeyboardInterrupt`` and ``SystemExit`` are raised
        after the cleanup.
        """
        if self.is_async:
            import anyio  # deferred: only async flows need an event loop

            state: State[Any] = anyio.run(lambda: self.run_async(args, kwargs))
            return state
        with watching_sigint():
            return drive(self, args, kwargs or {})

    async def run_async(
        self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> State[Any]:
        """:meth:`run` for an async body, on the running event loop."""
        return await drive_async(self, args, kwargs or {})

    def close_inline(self) -> None:
        """Stop the runner of this run's inline calls."""
        self._inline.stop()

    # -- bookkeeping used by the engine -----------------------------------------------------

    def next_task_run_name(self, task_name: str) -> str:
        """A new run name for a run of ``task_name``: ``task_name-1``, ``task_name-2``, ..."""
        with self._lock:
            n = self._counters.get(task_name, 0) + 1
            self._counters[task_name] = n
        return f"{task_name}-{n}"

    def submitted_counts(self) -> dict[str, int]:
        """Task runs created so far, by task name (for the progress display)."""
        with self._lock:
            return dict(self._counters)

    def began(self) -> None:
        """The runner started and the body is about to run: the clock and the display start."""
        self.record.started = time.monotonic()
        try:
            self.record.dashboard = self.runner.dashboard_url()
        except Exception:  # a runner's report of its dashboard never breaks a run
            logger.debug(
                "Runner %r failed to say its dashboard URL.", self.runner.name, exc_info=True
            )
        if self.progress:
            from conveyor.console.progress import start_display  # deferred: rich, when shown

            try:
                self._display = start_display(self)
            except Exception:  # a display that cannot be drawn never stops the run
                logger.warning("Live progress could not be shown.", exc_info=True)

    def ended(self, state: State[Any], error: BaseException | None) -> None:
        """The flow run ended in ``state``: stop the display and complete the record."""
        self.close_display()
        record = self.record
        record.ended = time.monotonic()
        record.state = state
        if error is not None:
            record.failures.append(failure_of(self.name, self.info.flow_name, state))
        if self.report is not None:
            from conveyor.report import interrupted_by  # deferred: only with a report

            self.write_report(self.report, interrupted=interrupted_by(error))

    def write_report(self, path: ReportPath, *, interrupted: str | None = None) -> Path | None:
        """
        Write this run's HTML run report to ``path`` (atomically) and return its path; None,
        with the error logged, if it could not be written. Done by itself when the run ends if
        the flow was given ``report=``.
        """
        from conveyor.report import write_report  # deferred: `import conveyor` stays light

        try:
            return write_report(self.record, path, interrupted=interrupted)
        except Exception:  # a report that cannot be written never changes the run's outcome
            logger.exception("The run report could not be written to %s.", path)
            return None

    def close_display(self) -> None:
        """Remove the live progress display, if one is shown; idempotent."""
        display, self._display = self._display, None
        if display is not None:
            try:
                display.close()
            except Exception:  # a display that cannot be drawn never breaks the run
                logger.warning("The live progress display failed to close.", exc_info=True)

    def on_task_run_state(self, run: TaskRun, old: State[Any], new: State[Any]) -> None:
        """A task run of this flow run changed state."""
        self._stall.changed()
        events = self.events
        if events is not None:
            events.append((run.options.name, old.type, new.type))
        try:
            if self._observe:
                assert self.host is not None
                self.host.task_run_state_changed(run.future, old, new)
        finally:  # a real Ctrl-C landing in an observer must not lose the run's bookkeeping
            if new.type in FINAL_TYPES:
                self._count_final(run, new)

    def _count_final(self, run: TaskRun, new: State[Any]) -> None:
        now = time.monotonic()
        start = run.first_start
        task_name = run.options.name
        with self._lock:
            self.record.count(task_name, run.future.name, new.name, now - start if start else None)
            detail = run.detail
            if detail is not None and self.record.task_runs is not None:
                self.record.task_runs.append(
                    detail.finish(run.future.id, run.future.name, task_name, new, now)
                )
            self._inflight.discard(run)
            if new.type is not StateType.COMPLETED:
                self._failures.append(run.future)
                failures = self.record.failures
                keep = detail is not None and len(failures) < TRACEBACKS
                failures.append(failure_of(run.future.name, task_name, new, with_traceback=keep))
            if self._inflight:
                return
            self._idle.notify_all()
            wakers, self._idle_waiters = self._idle_waiters, []
        for wake in wakers:
            wake()

    def warn_not_stopped(self, run: TaskRun, message: str) -> None:
        """Warn once per task that a timed-out run's work may still be running."""
        with self._lock:
            if run.options.name in self._warned:
                return
            self._warned.add(run.options.name)
        logger.warning("%s. Choose a runner that can stop running work to enforce it.", message)

    # -- submitting -------------------------------------------------------------------------

    def submit(
        self,
        task: Task[..., Any],
        options: TaskOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        runner: Runner | None = None,
    ) -> RunFuture[Any]:
        """Send one run of ``task`` to ``runner`` (the flow's) and return its future."""
        runner = runner or self.runner
        if options.resources and not runner.capabilities.resources:
            msg = (
                f"Task {task.name!r} asks for resources {options.resources!r}, but runner "
                f"{runner.name!r} cannot honour resource requests; remove `resources` or choose "
                "a runner that takes them (dask, ray)."
            )
            raise ConfigError(msg)
        if not self.accepting:
            msg = f"Flow run {self.name!r} has finished; submit task runs from inside its body."
            raise ConveyorError(msg)
        prints = options.log_prints
        if prints is None:
            prints = self.log_prints
        fn = task.printing_fn(prints) if prints or self.log_prints else task.fn
        run = TaskRun(fn, task.is_async, options, self, runner, args, kwargs)
        with self._lock:
            self._inflight.add(run)

        run.start()
        if runner.concurrency is ConcurrencyType.SEQUENTIAL:
            run.future.wait_unobserved()
        return run.future

    def call_inline(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """
        Run ``task`` here and return its value; in async code (an async flow body or task) an
        async task returns an awaitable instead. Sync code gets the value even where an event
        loop runs in its thread (a notebook cell): the task then runs on another loop's thread.
        """
        if task.is_async and not sync_caller_var.get() and _in_event_loop():
            return self._call_inline_async(task, args, kwargs)
        future = self.submit(task, task.options, args, kwargs, runner=self._inline)
        return future.result()

    async def _call_inline_async(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        future = self.submit(task, task.options, args, kwargs, runner=loop_inline_runner())
        return await future

    # -- waiting and ending -----------------------------------------------------------------

    def cancel_all(self, message: str) -> None:
        """Cancel every task run that is not final."""
        with self._lock:
            runs = list(self._inflight)
        for run in runs:
            run.cancel(message)

    def wait_all(self) -> None:
        """Block until every submitted task run is final (warning when nothing moves)."""
        with self._idle:
            while self._inflight:
                if not self._idle.wait(self._stall.interval()):
                    runs = list(self._inflight)  # the lock is held here
                    self._stall.check(self.name, functools.partial(_describe_runs, runs))

    async def wait_all_async(self) -> None:
        """Await until every submitted task run is final, without blocking the loop."""
        import asyncio  # deferred: only async flows get here

        loop = asyncio.get_running_loop()
        while True:
            waiter = loop.create_future()

            def wake(waiter: asyncio.Future[None] = waiter) -> None:
                loop.call_soon_threadsafe(_resolve, waiter)

            with self._lock:
                if not self._inflight:
                    return
                self._idle_waiters.append(wake)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), self._stall.interval())
            except asyncio.TimeoutError:
                self._stall.check(self.name, self._waiting_on)

    def _waiting_on(self) -> str:
        with self._lock:
            runs = list(self._inflight)
        return _describe_runs(runs)

    def final_state(self, value: Any, error: BaseException | None) -> State[Any]:
        """The flow run's state, from the body's outcome and its unchecked failed runs."""
        if error is not None:
            return Failed(error, f"The flow body raised {type(error).__name__}: {error}")
        unchecked = [f for f in self._failures if not f.observed]
        if not unchecked:
            return Completed(value)
        listed = "; ".join(f"{f.name} ({f.peek().name}: {f.peek().message})" for f in unchecked[:5])
        more = f" and {len(unchecked) - 5} more" if len(unchecked) > 5 else ""
        first = unchecked[0].peek().exception()
        return Failed(
            first,
            f"{len(unchecked)} task run(s) did not complete and the flow never checked them: "
            f"{listed}{more}.",
        )


def _describe_runs(runs: list[TaskRun]) -> str:
    runs = sorted(runs, key=lambda r: r.future.id)
    named = ", ".join(f"{r.future.name} ({r.future.peek().name})" for r in runs[:5])
    return f"{len(runs)} run(s): {named}" + (", ..." if len(runs) > 5 else "")


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _in_event_loop() -> bool:
    import asyncio  # deferred: asyncio is imported only where async tasks are

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
