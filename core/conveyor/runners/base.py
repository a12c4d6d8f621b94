"""
The runner protocol: the one base class every runner implements.

A runner is **configuration** until it is started: an attrs class whose init fields are its
options, picklable and comparable. :meth:`Runner.start` (or ``with runner:``) creates its live
resources (pools, clients, clusters); :meth:`Runner.stop` releases only what it created. A flow
run always starts its own copy (:meth:`Runner.duplicate`), so one runner object can serve many
flow runs at once.

conveyor's engine does the bookkeeping (states, retries, deadlines, dependencies, logging
context); a runner only executes **attempts**. To write one, subclass :class:`Runner` and
implement :meth:`~Runner.execute` (start running an attempt and report how it ended, from any
thread, with :meth:`Attempt.succeed`, :meth:`Attempt.fail` or :meth:`Attempt.crash`), plus
:meth:`~Runner.on_start`, :meth:`~Runner.on_stop` and :meth:`~Runner.cancel` where needed.
"""

from __future__ import annotations

import contextvars
import enum
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import attrs

from conveyor._context import log_names_var
from conveyor.exceptions import RunnerNotStartedError, Terminated
from conveyor.states import Cancelled, Completed, Crashed, Failed, ResultRef, State

if TYPE_CHECKING:
    from types import TracebackType

    from conveyor._engine import TaskRun
    from conveyor.futures import RunFuture

__all__ = [
    "Attempt",
    "Capabilities",
    "ConcurrencyType",
    "PendingResult",
    "Runner",
    "is_async_callable",
]

R = TypeVar("R", bound="Runner")


class ConcurrencyType(str, enum.Enum):
    """How a runner runs submitted work, as in the ancestor's ``TaskConcurrencyType``."""

    SEQUENTIAL = "sequential"
    CONCURRENT = "concurrent"
    PARALLEL = "parallel"

    def __repr__(self) -> str:
        return f"ConcurrencyType.{self.name}"


@attrs.frozen
class Capabilities:
    """
    What a runner can enforce. The core acts on these instead of silently ignoring an option.

    - ``hard_timeouts``: a run past its timeout is really stopped. Without it the run is still
      marked TimedOut on time, and a warning says its work may still be running.
    - ``cancel_running``: ``cancel()`` stops work that is already running (pending work is
      always stopped).
    - ``native_futures``: a future passed to another task stays on the backend (a Dask future,
      a Ray ObjectRef); the driver never fetches the value.
    - ``resources``: per-task resource requests (``@task(resources=...)``) are honoured. A task
      that asks for resources on a runner without this is refused before it runs.
    - ``isolation``: a task that kills its process does not take the caller down.
    """

    hard_timeouts: bool = False
    cancel_running: bool = False
    native_futures: bool = False
    resources: bool = False
    isolation: bool = False

    def as_dict(self) -> dict[str, bool]:
        """The capabilities as a plain dict."""
        return attrs.asdict(self)


def _restore(cls: type[R], options: dict[str, Any]) -> R:
    return cls(**options)


def _before_on_stop(exc: BaseException) -> bool:
    """Whether ``exc`` was raised in :meth:`Runner.stop` before ``on_stop`` ran a line."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code is not Runner.stop.__code__:
        tb = tb.tb_next
    if tb is None:
        return False
    inner = tb.tb_next
    while inner is not None:  # below stop(): on_stop past its first line means it ran
        code = inner.tb_frame.f_code
        if code.co_name == "on_stop" and inner.tb_lineno != code.co_firstlineno:
            return False
        inner = inner.tb_next
    return True


@attrs.define(kw_only=True, eq=True)
class Runner:
    """
    Base class of every runner.

    Subclasses are ``@attrs.define(kw_only=True)`` classes: their init fields are the options,
    and live resources are fields with ``init=False, eq=False, repr=False``. Set the class
    variables ``name``, ``concurrency`` and ``capabilities``.
    """

    name: ClassVar[str] = "runner"
    concurrency: ClassVar[ConcurrencyType] = ConcurrencyType.SEQUENTIAL
    capabilities: ClassVar[Capabilities] = Capabilities()

    _started: bool = attrs.field(default=False, init=False, eq=False, repr=False)

    # -- configuration ----------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """The runner's options, as given to its constructor."""
        return {
            (f.alias or f.name): getattr(self, f.name) for f in attrs.fields(type(self)) if f.init
        }

    def duplicate(self: R) -> R:
        """A new, unstarted runner with the same options."""
        return _restore(type(self), self.options())

    def __reduce__(self) -> tuple[Any, ...]:
        # A runner pickles as its configuration, never its live resources.
        return (_restore, (type(self), self.options()))

    @property
    def started(self) -> bool:
        """Whether the runner is between :meth:`start` and :meth:`stop`."""
        return self._started

    # -- lifecycle --------------------------------------------------------------------------

    def start(self: R) -> R:
        """
        Create the runner's live resources and return the runner. Raises
        :class:`RuntimeError` if it is already started (start a :meth:`duplicate` instead),
        and :class:`~conveyor.BackendUnavailable` if its backend cannot be reached.
        """
        if self._started:
            msg = (
                f"Runner {self!r} is already started; start a copy with `runner.duplicate()` "
                "to use it in two places at once."
            )
            raise RuntimeError(msg)
        try:
            self.on_start()
        except BaseException:
            # Tear down whatever on_start created before it failed; its error is the one raised.
            try:
                self.on_stop()
            except Exception:
                logging.getLogger("conveyor").exception(
                    "Cleaning up runner %r after a failed start failed too.", self.name
                )
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Release what :meth:`start` created; a no-op if not started."""
        if not self._started:
            return
        try:
            self._started = False
            self.on_stop()
        except KeyboardInterrupt as exc:
            # A Ctrl-C that landed before on_stop ran a line would leave everything running
            # (a second Ctrl-C just as a flow stops its runner): stop now, then let it go on.
            if _before_on_stop(exc):
                self._started = False
                self.on_stop()
            raise

    def __enter__(self: R) -> R:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self: R) -> R:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.stop)

    def submit(self, attempt: Attempt) -> None:
        """
        Hand an attempt to the runner. The engine calls this; raises
        :class:`~conveyor.RunnerNotStartedError` when the runner is not started.
        """
        if not self._started:
            msg = (
                f"Runner {self.name!r} is not started, so it cannot run {attempt.name!r}; "
                "use it inside a flow or in `with runner:`."
            )
            raise RunnerNotStartedError(msg)
        self.execute(attempt)

    # -- what a runner implements -----------------------------------------------------------

    def on_start(self) -> None:
        """Create live resources. Called by :meth:`start`."""

    def on_stop(self) -> None:
        """Release live resources this runner created, and nothing else."""

    def execute(self, attempt: Attempt) -> None:
        """
        Start running ``attempt`` and return; report its end from any thread with
        :meth:`Attempt.succeed`, :meth:`Attempt.fail` or :meth:`Attempt.crash`.

        Must not raise for a problem of this one attempt (report ``crash`` instead). Every
        attempt handed over must be reported exactly once, unless the engine finished it first
        (timeout, cancel): reports after that are ignored.
        """
        raise NotImplementedError

    def upstream_handle(self, attempt: Attempt) -> Any:
        """
        For runners with ``native_futures``: the backend handle of the result of ``attempt``,
        which is still running, so a downstream run can be launched at once and the backend
        orders the two (the handle arrives as :class:`~conveyor.runners.PendingResult`'s
        ``handle`` in the downstream run's arguments). Return None (the default) to have
        downstream runs wait until the upstream run is final.
        """
        return None

    def cancel(self, attempt: Attempt) -> bool:
        """
        Stop ``attempt``: drop it if it has not started, interrupt it if it runs and the backend
        can. Return True if the work is stopped (or will never start), False if it may still
        be running. The engine already marked the run; this is about the work.
        """
        return False


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
        state = self.future._wait()
        assert state is not None
        return state.result()


def _format_exception(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class Attempt:
    """
    One attempt of one task run, as a runner sees it.

    The engine builds it; the runner executes ``fn(*args, **kwargs)`` (a coroutine function when
    ``is_async``) and reports the end once. ``handle`` is free for the runner's own use (a
    backend future, a cancel scope).
    """

    __slots__ = (
        "args",
        "context",
        "fn",
        "handle",
        "is_async",
        "kwargs",
        "name",
        "number",
        "run",
    )

    def __init__(
        self,
        run: TaskRun,
        number: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: contextvars.Context,
    ) -> None:
        self.run = run
        self.number = number
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.context = context
        self.name: str = run.future.name
        self.is_async: bool = run.task.is_async
        self.handle: Any = None

    def __repr__(self) -> str:
        return f"<Attempt {self.number} of {self.name}>"

    # -- facts for the runner ---------------------------------------------------------------

    @property
    def task_name(self) -> str:
        """The task's name."""
        return self.run.task.name

    @property
    def flow_run_name(self) -> str:
        """The name of the flow run this attempt belongs to."""
        return self.run.flow_run.name

    @property
    def timeout(self) -> float | None:
        """The run's ``timeout_seconds``; the engine enforces it whatever the runner does."""
        return self.run.options.timeout_seconds

    @property
    def resources(self) -> Mapping[str, float]:
        """Per-task resource requests, e.g. ``{"GPU": 1}``."""
        return self.run.options.resources

    @property
    def runner_options(self) -> Mapping[str, Any]:
        """Per-task options meant for the runner (``@task(runner_options=...)``)."""
        return self.run.options.runner_options

    @property
    def finished(self) -> bool:
        """Whether this attempt's end is known (reported, timed out or cancelled)."""
        return self.run.attempt is not self or self.run.future.done()

    # -- reporting --------------------------------------------------------------------------

    def mark_running(self) -> None:
        """
        Report that the work has started (the run becomes RUNNING). :meth:`call` and
        :meth:`call_async` do this themselves; runners that execute elsewhere call it when the
        backend starts the work (or when they hand it over, if they cannot tell).
        """
        self.run.on_attempt_start(self)

    def succeed(self, value: Any) -> None:
        """Report that the call returned ``value`` (or a :class:`~conveyor.ResultRef`)."""
        self.run.on_attempt_end(self, Completed(value))

    def fail(self, exc: BaseException, traceback: str | None = None) -> None:
        """Report that the user's code raised ``exc`` (an :class:`Exception`)."""
        self.run.on_attempt_end(self, Failed(exc, traceback=traceback))

    def crash(
        self,
        message: str,
        *,
        reason: str = "backend-error",
        exc: BaseException | None = None,
        traceback: str | None = None,
    ) -> None:
        """Report that the infrastructure failed the attempt (never the user's code)."""
        self.run.on_attempt_end(self, Crashed(message, reason=reason, exc=exc, traceback=traceback))

    def report(self, state: State[Any]) -> None:
        """Report a final state directly."""
        self.run.on_attempt_end(self, state)

    def report_exception(self, exc: BaseException) -> None:
        """
        Report an exception the call raised: an :class:`Exception` is FAILED; ``SystemExit``
        and other ``BaseException`` are CRASHED; a ``KeyboardInterrupt`` (or SIGTERM) of this
        very process while the call ran in it is CANCELLED.
        """
        if isinstance(exc, Exception):
            self.fail(exc)
        elif isinstance(exc, SystemExit):
            self.crash(
                f"The task called sys.exit({exc.code!r}).",
                reason="system-exit",
                exc=exc,
                traceback=_format_exception(exc),
            )
        elif isinstance(exc, KeyboardInterrupt | Terminated):
            # The program itself was interrupted (Ctrl-C, SIGTERM) while this ran in-process.
            self.report(
                Cancelled(f"Interrupted by {type(exc).__name__} while running.", stopped=True)
            )
        else:
            self.crash(
                f"The task was interrupted by {type(exc).__name__}.",
                reason="interrupted",
                exc=exc,
                traceback=_format_exception(exc),
            )

    # -- running the call in this process ---------------------------------------------------

    def call(self) -> None:
        """
        Run a sync attempt here, in this thread, with the run's context, and report its end.
        """
        if self.finished:
            return
        self.run.on_attempt_start(self)
        try:
            value = self.context.run(self._call_sync)
        except BaseException as exc:
            self.report_exception(exc)
            if not isinstance(exc, Exception) and not isinstance(exc, SystemExit):
                raise
        else:
            self.succeed(value)

    def _call_sync(self) -> Any:
        log_names_var.set((self.run.flow_run.name, self.name))
        return self.fn(*self.args, **self.kwargs)

    async def call_async(self) -> None:
        """
        Await an async attempt here, on the running event loop, and report its end. The
        caller's cancel scope cancelling it is reported as the runner's own doing (the engine
        has already marked the run).
        """
        if self.finished:
            return
        self.run.on_attempt_start(self)
        token = log_names_var.set((self.run.flow_run.name, self.name))
        try:
            value = await self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            import anyio

            if isinstance(exc, anyio.get_cancelled_exc_class()) and self.finished:
                raise
            self.report_exception(exc)
            if not isinstance(exc, Exception) and not isinstance(exc, SystemExit):
                raise
        else:
            self.succeed(value)
        finally:
            log_names_var.reset(token)


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is a coroutine function (also through ``functools.partial``)."""
    while hasattr(fn, "func"):  # functools.partial
        fn = fn.func
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object: look at its __call__
        call = type(fn).__dict__.get("__call__") or getattr(type(fn), "__call__", None)  # noqa: B004
        code = getattr(call, "__code__", None)
    return code is not None and bool(code.co_flags & _CO_COROUTINE)


_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect
