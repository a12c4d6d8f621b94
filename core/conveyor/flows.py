"""
Flows: functions whose body submits task runs, on one runner per flow run.

A flow run resolves its runner by name (see :mod:`conveyor.config`), starts its own copy,
runs the body, waits for every task run the body submitted, and stops the runner. Its final
state is FAILED if the body raised, or if a submitted run did not complete and the body never
looked at that run's result or state.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from conveyor._context import flow_run_var, log_names_var
from conveyor._engine import TaskOptions, TaskRun
from conveyor.exceptions import ConfigError, ConveyorError
from conveyor.flow_run_info import FlowRunInfo
from conveyor.futures import RunFuture
from conveyor.run_logging import install_record_factory
from conveyor.runners.base import ConcurrencyType, Runner, is_async_callable
from conveyor.runners.sequential import SequentialRunner
from conveyor.states import FINAL_TYPES, Completed, Failed, State, StateType
from conveyor.tasks import _untyped

if TYPE_CHECKING:
    import asyncio

    from conveyor.plugins.manager import PluginHost
    from conveyor.tasks import Task

__all__ = ["Flow", "FlowRun", "flow"]

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("conveyor")

RunnerSpec = str | Runner | None


class FlowRun:
    """
    One run of a flow: its started runner, and the task runs it submitted that are not final.
    """

    def __init__(self, flow: Flow[..., Any], runner: Runner, host: PluginHost | None) -> None:
        self.flow = flow
        self.id = os.urandom(4).hex()
        self.name = f"{flow.name}-{self.id}"
        self.runner = runner
        self._inline = SequentialRunner().start()
        self._host = host
        self._observe = host is not None and host.observes_task_runs()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight: set[TaskRun] = set()
        self._failures: list[RunFuture[Any]] = []
        self._counters: dict[str, int] = {}
        self._warned: set[str] = set()
        self._idle_waiters: list[Callable[[], object]] = []
        self._summary: Counter[str] | None = None
        self.accepting = True
        self.info = FlowRunInfo(
            id=self.id, name=self.name, flow_name=flow.name, runner_name=runner.name, runner=runner
        )

    def __repr__(self) -> str:
        return f"<FlowRun {self.name} on {self.runner.name}>"

    # -- bookkeeping used by the engine -----------------------------------------------------

    def next_task_run_name(self, task_name: str) -> str:
        with self._lock:
            n = self._counters.get(task_name, 0) + 1
            self._counters[task_name] = n
        return f"{task_name}-{n}"

    def started(self) -> None:
        """The runner is started and the body is about to run."""
        if self._host is not None:
            self._host.flow_run_started(self.info)

    def add_summary(self, counts: Counter[str]) -> None:
        """Count the final states of this run's task runs by name into ``counts``."""
        self._summary = counts

    def on_task_run_state(self, run: TaskRun, old: State[Any], new: State[Any]) -> None:
        if self._observe:
            assert self._host is not None
            self._host.task_run_state_changed(run.future, old, new)
        if new.type not in FINAL_TYPES:
            return
        with self._lock:
            if self._summary is not None:
                self._summary[new.name] += 1
            self._inflight.discard(run)
            if new.type is not StateType.COMPLETED:
                self._failures.append(run.future)
            if self._inflight:
                return
            self._idle.notify_all()
            wakers, self._idle_waiters = self._idle_waiters, []
        for wake in wakers:
            wake()

    def warn_not_stopped(self, run: TaskRun, message: str) -> None:
        """Warn once per task that a timed-out run's work may still be running."""
        with self._lock:
            if run.task.name in self._warned:
                return
            self._warned.add(run.task.name)
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
        run = TaskRun(task, options, self, runner, args, kwargs)
        with self._lock:
            self._inflight.add(run)
        run.start()
        if runner.concurrency is ConcurrencyType.SEQUENTIAL:
            run.future._wait()
        return run.future

    def call_inline(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run ``task`` here and return its value (a coroutine in async code)."""
        if task.is_async and _in_event_loop():
            return self._call_inline_async(task, args, kwargs)
        future = self.submit(task, task.options, args, kwargs, runner=self._inline)
        return future.result()

    async def _call_inline_async(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        future = self.submit(task, task.options, args, kwargs, runner=_LOOP_INLINE)
        return await future

    # -- running the body -------------------------------------------------------------------

    def _begin(self) -> tuple[Any, Any]:
        install_record_factory()
        return flow_run_var.set(self), log_names_var.set((self.name, None))

    def _end(self, tokens: tuple[Any, Any]) -> None:
        flow_run_var.reset(tokens[0])
        log_names_var.reset(tokens[1])

    def run(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> State[Any]:
        """
        Execute this run once: start its runner, run the body (an async body on a new event
        loop), wait for its task runs, stop the runner, and return the final state. The body's
        own exceptions end in the state; ``KeyboardInterrupt`` and ``SystemExit`` are raised
        after the cleanup.
        """
        kwargs = kwargs or {}
        if self.flow.is_async:
            import anyio

            state: State[Any] = anyio.run(lambda: self.flow._run_async(self, args, kwargs, True))
            return state
        return self.flow._run_sync(self, args, kwargs, True)  # type: ignore[no-any-return]

    def cancel_all(self, message: str) -> None:
        """Cancel every task run that is not final."""
        with self._lock:
            runs = list(self._inflight)
        for run in runs:
            run.cancel(message)

    def wait_all(self) -> None:
        """Block until every submitted task run is final."""
        with self._idle:
            while self._inflight:
                self._idle.wait()

    async def wait_all_async(self) -> None:
        """Await until every submitted task run is final, without blocking the loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            waiter = loop.create_future()

            def wake(waiter: asyncio.Future[None] = waiter) -> None:
                loop.call_soon_threadsafe(_resolve, waiter)

            with self._lock:
                if not self._inflight:
                    return
                self._idle_waiters.append(wake)
            await waiter

    def final_state(self, value: Any, error: BaseException | None) -> State[Any]:
        """The flow run's state, from the body's outcome and its unchecked failed runs."""
        if error is not None:
            return Failed(error, f"The flow body raised {type(error).__name__}: {error}")
        unchecked = [f for f in self._failures if not f._observed]
        if not unchecked:
            return Completed(value)
        listed = "; ".join(f"{f.name} ({f._state.name}: {f._state.message})" for f in unchecked[:5])
        more = f" and {len(unchecked) - 5} more" if len(unchecked) > 5 else ""
        first = unchecked[0]._state.exception()
        return Failed(
            first,
            f"{len(unchecked)} task run(s) did not complete and the flow never checked them: "
            f"{listed}{more}.",
        )


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _LoopInlineRunner(Runner):
    """Runs async tasks called inline from async code on the caller's own event loop."""

    name = "inline"
    concurrency = ConcurrencyType.CONCURRENT

    def execute(self, attempt: Any) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        attempt.handle = (loop, loop.create_task(attempt.call_async()))

    def cancel(self, attempt: Any) -> bool:
        if attempt.handle is None:
            return True
        loop, task = attempt.handle
        loop.call_soon_threadsafe(task.cancel)
        return True


_LOOP_INLINE = _LoopInlineRunner().start()


class Flow(Generic[P, R]):
    """
    A function whose body submits task runs. Create one with :func:`flow`.

    Calling it runs it: it returns the body's value, or raises if the flow run FAILED. With
    ``return_state=True`` it returns the final :class:`~conveyor.State` instead. An async flow
    returns a coroutine.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        runner: RunnerSpec = None,
        _call_runner: RunnerSpec = None,
    ) -> None:
        if not callable(_untyped(fn)):
            msg = f"@flow needs a function, got {fn!r} of type {type(fn).__name__}; decorate a def."
            raise TypeError(msg)
        for label, spec in (("runner", runner), ("runner", _call_runner)):
            if spec is not None and not isinstance(_untyped(spec), str | Runner):
                msg = (
                    f"@flow: `{label}={spec!r}` is invalid; give a runner name such as "
                    "'concurrent', or a runner object such as ConcurrentRunner()."
                )
                raise ConfigError(msg)
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "flow")
        self.runner = runner
        self._call_runner = _call_runner
        self.is_async = is_async_callable(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Flow {self.name}>"

    def with_options(self, *, name: str | None = None, runner: RunnerSpec = None) -> Flow[P, R]:
        """
        A copy of the flow with another name, or another runner for its calls. A runner given
        here takes precedence over everything else, including ``CONVEYOR_RUNNER``.
        """
        return Flow(
            self.fn,
            name=name or self.name,
            runner=self.runner,
            _call_runner=runner if runner is not None else self._call_runner,
        )

    def create_run(self) -> FlowRun:
        """
        A new, unstarted run of this flow, on the runner that resolution picks now (see
        :mod:`conveyor.config`); execute it with :meth:`FlowRun.run`. Calling the flow does
        both.
        """
        return self._make_run()

    def _make_run(self) -> FlowRun:
        from conveyor.config import resolve_runner
        from conveyor.plugins.manager import get_host

        host = get_host()
        runner = resolve_runner(call=self._call_runner, decorator=self.runner, host=host)
        return FlowRun(self, runner.duplicate(), host)

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """
        Run the flow: return the body's value (or raise if the flow run FAILED), or the final
        :class:`~conveyor.State` with ``return_state=True``; a coroutine for an async flow.
        """
        flow_run = self._make_run()
        if self.is_async:
            return self._run_async(flow_run, args, kwargs, return_state)
        return self._run_sync(flow_run, args, kwargs, return_state)

    def _run_sync(
        self, flow_run: FlowRun, args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool
    ) -> Any:
        value: Any = None
        error: BaseException | None = None
        flow_run.runner.start()
        try:
            flow_run.started()
            tokens = flow_run._begin()
            try:
                value = self.fn(*args, **kwargs)
                flow_run.wait_all()
            except BaseException as exc:
                error = exc
                flow_run.cancel_all(
                    f"Flow run {flow_run.name!r} ended early: {type(exc).__name__}."
                )
            finally:
                flow_run.accepting = False
                flow_run._end(tokens)
        finally:
            flow_run._inline.stop()
            _stop_quietly(flow_run.runner, error)
        return _finish(flow_run, value, error, return_state)

    async def _run_async(
        self, flow_run: FlowRun, args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool
    ) -> Any:
        value: Any = None
        error: BaseException | None = None
        await flow_run.runner.__aenter__()
        try:
            flow_run.started()
            tokens = flow_run._begin()
            try:
                value = await self.fn(*args, **kwargs)  # type: ignore[misc]
                await flow_run.wait_all_async()
            except BaseException as exc:
                error = exc
                flow_run.cancel_all(
                    f"Flow run {flow_run.name!r} ended early: {type(exc).__name__}."
                )
            finally:
                flow_run.accepting = False
                flow_run._end(tokens)
        finally:
            flow_run._inline.stop()
            try:
                await flow_run.runner.__aexit__(None, None, None)
            except Exception:
                if error is None:
                    raise
                logger.exception("Stopping runner %r failed.", flow_run.runner.name)
        return _finish(flow_run, value, error, return_state)


def _stop_quietly(runner: Runner, error: BaseException | None) -> None:
    try:
        runner.stop()
    except KeyboardInterrupt:
        # A second Ctrl-C. Landing inside the runner's stop, it is the runner's to handle; landing
        # before that stop began, it would leave the runner (its cluster) running: stop it now.
        if runner.started:
            runner.stop()
        raise
    except Exception:
        if error is None:
            raise
        # The body's error matters more than a cleanup error; keep it and log this one.
        logger.exception("Stopping runner %r failed.", runner.name)


def _finish(flow_run: FlowRun, value: Any, error: BaseException | None, return_state: bool) -> Any:
    state = flow_run.final_state(value, error)
    if flow_run._host is not None:
        flow_run._host.flow_run_finished(flow_run.info, state)
    if error is not None and not isinstance(error, Exception):
        raise error  # KeyboardInterrupt, SystemExit: after cleanup, never swallowed
    if return_state:
        return state
    if error is not None:
        raise error
    return state.result()


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(
    *, name: str | None = None, runner: RunnerSpec = None
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(fn: Any = None, /, *, name: str | None = None, runner: RunnerSpec = None) -> Any:
    """
    Make a function a flow; use as ``@flow`` or ``@flow(runner="dask")``.

    ``runner`` is a runner name or a runner object; ``CONVEYOR_RUNNER``, ``conveyor run
    --runner`` and ``.with_options(runner=...)`` override it (see :mod:`conveyor.config`).
    """
    if fn is None:
        return lambda f: Flow(f, name=name, runner=runner)
    return Flow(fn, name=name, runner=runner)
