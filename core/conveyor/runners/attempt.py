"""
One attempt of one task run, as a runner sees it, and how a runner reports its end.

The engine builds an :class:`Attempt` with everything a runner needs (the call, the names, the
timeout, the resources and runner options); the runner executes it and reports the end once,
from any thread, with :meth:`Attempt.succeed`, :meth:`Attempt.fail` or :meth:`Attempt.crash`.
The attempt passes the report to its :class:`AttemptReporter` (the engine's task run), which
alone decides the run's state.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from conveyor._context import log_names_var, sync_caller_var
from conveyor._interrupts import interrupts, is_real_interrupt
from conveyor.runners.outcome import state_for_exception
from conveyor.states import Completed, Crashed, CrashReason, Failed, ResultRef, State

if TYPE_CHECKING:
    from conveyor.futures import RunFuture

__all__ = ["Attempt", "AttemptReporter", "PendingResult", "is_async_callable"]


class AttemptReporter(Protocol):
    """Where an attempt's reports go: the engine's task run, which owns the run's state."""

    def attempt_started(self, attempt: Attempt) -> None:
        """The runner started executing ``attempt``."""

    def attempt_ended(self, attempt: Attempt, state: State[Any]) -> None:
        """The runner reports how ``attempt`` ended."""

    def is_current(self, attempt: Attempt) -> bool:
        """Whether ``attempt`` is the run's attempt in flight (not timed out, cancelled, ...)."""
        ...


class Attempt:
    """
    One attempt of one task run, as a runner sees it.

    The runner executes ``fn(*args, **kwargs)`` (a coroutine function when ``is_async``) and
    reports the end once. ``handle`` is free for the runner's own use (a backend future, a
    cancel scope).
    """

    __slots__ = (
        "_reporter",
        "args",
        "context",
        "flow_run_name",
        "fn",
        "handle",
        "in_process",
        "is_async",
        "kwargs",
        "name",
        "number",
        "resources",
        "runner_options",
        "task_name",
        "timeout",
        "wants_where",
        "where",
    )

    def __init__(
        self,
        reporter: AttemptReporter,
        number: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: contextvars.Context,
        *,
        name: str,
        task_name: str,
        flow_run_name: str,
        is_async: bool,
        timeout: float | None = None,
        resources: Mapping[str, float] | None = None,
        runner_options: Mapping[str, Any] | None = None,
        wants_where: bool = False,
    ) -> None:
        self._reporter = reporter
        self.number = number
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.context = context
        #: The task run's name (``fetch-3``).
        self.name = name
        #: The task's name (``fetch``).
        self.task_name = task_name
        #: The name of the flow run this attempt belongs to.
        self.flow_run_name = flow_run_name
        self.is_async = is_async
        #: The run's ``timeout_seconds``; the engine enforces it whatever the runner does.
        self.timeout = timeout
        #: Per-task resource requests, e.g. ``{"GPU": 1}``.
        self.resources: Mapping[str, float] = resources or {}
        #: Per-task options meant for the runner (``@task(runner_options=...)``).
        self.runner_options: Mapping[str, Any] = runner_options or {}
        #: Whether the flow run records where each attempt ran (``record_runs``): a runner
        #: for which finding out costs something does it only then.
        self.wants_where = wants_where
        self.handle: Any = None
        #: Where the attempt runs, for the run record and report: set by ``mark_running(where=)``
        #: (``"dask worker tcp://127.0.0.1:40123"``, ``"ray node 10.0.0.2 worker 3f2a..."``);
        #: :meth:`call` and :meth:`call_async` note the thread themselves.
        self.where: str | None = None
        #: Whether the work runs here, through :meth:`call` or :meth:`call_async`: then the
        #: engine, told in the running thread that the work started, can name the thread.
        self.in_process = False

    def __repr__(self) -> str:
        return f"<Attempt {self.number} of {self.name}>"

    @property
    def finished(self) -> bool:
        """Whether this attempt's end is known (reported, timed out or cancelled)."""
        return not self._reporter.is_current(self)

    # -- reporting --------------------------------------------------------------------------

    def mark_running(self, where: str | None = None) -> None:
        """
        Report that the work has started (the run becomes RUNNING), and ``where`` it runs, in
        words a person knows the backend by (``"dask worker tcp://10.0.0.5:40123"``,
        ``"ray node 10.0.0.5 worker 3f2a9c"``, ``"process 4242"``): the run record, the
        console's report and the HTML report show it. :meth:`call` and :meth:`call_async` do
        this themselves; runners that execute elsewhere call it when the backend starts the
        work (or when they hand it over, if they cannot tell). A place learnt only later may
        be set as ``attempt.where`` until the attempt is reported.
        """
        if where is not None:
            self.where = where
        self._reporter.attempt_started(self)

    def place(self) -> str | None:
        """Where the attempt ran: what the runner said, or the thread that ran it."""
        return self.where

    def succeed(self, value: Any) -> None:
        """Report that the call returned ``value`` (or a :class:`~conveyor.ResultRef`)."""
        self._reporter.attempt_ended(self, Completed(value))

    def fail(self, exc: BaseException, traceback: str | None = None) -> None:
        """Report that the user's code raised ``exc`` (an :class:`Exception`)."""
        self._reporter.attempt_ended(self, Failed(exc, traceback=traceback))

    def crash(
        self,
        message: str,
        *,
        reason: CrashReason | str = CrashReason.BACKEND_ERROR,
        exc: BaseException | None = None,
        traceback: str | None = None,
    ) -> None:
        """
        Report that the infrastructure failed the attempt (never the user's code). ``reason``
        is a :class:`~conveyor.CrashReason`; another string is kept, and logged once.
        """
        state = Crashed(message, reason=reason, exc=exc, traceback=traceback)
        self._reporter.attempt_ended(self, state)

    def report(self, state: State[Any]) -> None:
        """Report a final state directly."""
        self._reporter.attempt_ended(self, state)

    def report_exception(self, exc: BaseException, *, interrupted: bool = False) -> None:
        """
        Report an exception the call raised, by the rule of :mod:`conveyor.runners.outcome`:
        an :class:`Exception` is FAILED; ``SystemExit`` and other ``BaseException`` are
        CRASHED; with ``interrupted`` (a real Ctrl-C or SIGTERM of this process landed in the
        call) it is CANCELLED.
        """
        self._reporter.attempt_ended(self, state_for_exception(exc, interrupted=interrupted))

    # -- running the call in this process ---------------------------------------------------

    def call(self) -> None:
        """
        Run a sync attempt here, in this thread, with the run's context, and report its end.
        """
        if self.finished:
            return
        self.in_process = True
        self._reporter.attempt_started(self)
        before = interrupts()
        try:
            value = self.context.run(self._call_sync)
        except BaseException as exc:
            real = is_real_interrupt(exc, before)
            self.report_exception(exc, interrupted=real)
            if real:
                raise  # the program is being interrupted: the flow ends, after cleanup
        else:
            self.succeed(value)

    def _call_sync(self) -> Any:
        log_names_var.set((self.flow_run_name, self.name))
        sync_caller_var.set(True)
        return self.fn(*self.args, **self.kwargs)

    async def call_async(self) -> None:
        """
        Await an async attempt here, on the running event loop, and report its end. The
        caller's cancel scope cancelling it is reported as the runner's own doing (the engine
        has already marked the run).
        """
        if self.finished:
            return
        self.in_process = True
        self._reporter.attempt_started(self)
        token = log_names_var.set((self.flow_run_name, self.name))
        sync_token = sync_caller_var.set(False)
        before = interrupts()
        try:
            value = await self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            import anyio  # deferred: only async runs need it

            if isinstance(exc, anyio.get_cancelled_exc_class()):
                if self.finished:
                    raise  # the engine cancelled it (timeout, cancel): already reported
                self.report_exception(exc)
                raise  # cancelled by its own event loop: that loop is going away
            real = is_real_interrupt(exc, before)
            self.report_exception(exc, interrupted=real)
            if real:
                raise
        else:
            self.succeed(value)
        finally:
            sync_caller_var.reset(sync_token)
            log_names_var.reset(token)


class PendingResult(ResultRef[Any]):
    """
    The result of an upstream run that is still running on the same runner, passed to a
    downstream run launched at once. ``handle`` is what the runner's
    :meth:`~conveyor.runners.Runner.upstream_handle` gave for it (a Dask future, a Ray
    ObjectRef); :meth:`get` waits for the upstream run and returns its value.
    """

    __slots__ = ("future", "handle")

    def __init__(self, future: RunFuture[Any], handle: Any) -> None:
        self.future = future
        self.handle = handle

    def __repr__(self) -> str:
        return f"<PendingResult of {self.future.name}>"

    def get(self) -> Any:
        state = self.future.wait_unobserved()
        assert state is not None
        return state.result()


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is a coroutine function (also through ``functools.partial``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - a callable object's own __call__
    return not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)
