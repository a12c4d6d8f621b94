"""
The task-run engine: states, dependencies, retries, deadlines and cancellation of one run.

The engine is the only writer of a run's state. Runners execute attempts and report how each
ended; the engine decides the run's state from that, and the first final state wins: a late
report after a timeout or a cancel is logged and dropped.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from conveyor._timers import TimerHandle, call_later
from conveyor.futures import RunFuture
from conveyor.runners.base import Attempt, PendingResult
from conveyor.states import (
    Cancelled,
    Crashed,
    NotRun,
    Pending,
    ResultRef,
    Retrying,
    Running,
    State,
    StateType,
    TimedOut,
)

if TYPE_CHECKING:
    from conveyor.flows import FlowRun
    from conveyor.runners.base import Runner
    from conveyor.tasks import Task

logger = logging.getLogger("conveyor")

_ids = itertools.count(1)
_lock = threading.Lock()


@attrs.frozen(kw_only=True)
class TaskOptions:
    """The run options of a task; validated when the task is defined."""

    name: str
    retries: int = 0
    retry_delay_seconds: float = 0.0
    timeout_seconds: float | None = None
    crash_retries: int = 0
    resources: dict[str, float] = attrs.field(factory=dict, eq=False)
    runner_options: dict[str, Any] = attrs.field(factory=dict, eq=False)
    map_window: int = 1024


_CONTAINERS = (list, tuple, set, frozenset, dict)


def collect_futures(obj: Any, found: list[RunFuture[Any]], depth: int = 0) -> None:
    """Append every :class:`RunFuture` in ``obj`` (and its lists, tuples, sets, dicts)."""
    if isinstance(obj, RunFuture):
        found.append(obj)
    elif depth < 8 and isinstance(obj, _CONTAINERS):
        items = obj.values() if isinstance(obj, dict) else obj
        for item in items:
            if isinstance(item, RunFuture) or isinstance(item, _CONTAINERS):
                collect_futures(item, found, depth + 1)


def substitute(obj: Any, values: dict[int, Any], depth: int = 0) -> Any:
    """Return ``obj`` with each future replaced by ``values[id(future)]``."""
    if isinstance(obj, RunFuture):
        return values[id(obj)]
    if depth >= 8 or not isinstance(obj, _CONTAINERS):
        return obj
    if isinstance(obj, dict):
        return {k: substitute(v, values, depth + 1) for k, v in obj.items()}
    items = [substitute(v, values, depth + 1) for v in obj]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*items)
    return type(obj)(items)


class TaskRun:
    """
    One run of a task inside a flow run: its future, its options and its current attempt.
    """

    __slots__ = (
        "args",
        "attempt",
        "attempts",
        "chained",
        "context",
        "crashes",
        "failures",
        "flow_run",
        "future",
        "kwargs",
        "options",
        "runner",
        "task",
        "timer",
    )

    def __init__(
        self,
        task: Task[..., Any],
        options: TaskOptions,
        flow_run: FlowRun,
        runner: Runner,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.task = task
        self.options = options
        self.flow_run = flow_run
        self.runner = runner
        self.args = args
        self.kwargs = kwargs
        self.attempt: Attempt | None = None
        self.attempts = 0
        self.failures = 0
        self.crashes = 0
        self.timer: TimerHandle | None = None
        self.chained: list[RunFuture[Any]] | None = None
        self.context = contextvars.copy_context()
        name = flow_run.next_task_run_name(options.name)
        self.future: RunFuture[Any] = RunFuture(f"{flow_run.id}.{next(_ids)}", name, _PENDING, self)

    # -- state changes ----------------------------------------------------------------------

    def _transition(self, state: State[Any]) -> bool:
        old = self.future._state
        if not self.future._set_state(state):
            if state.is_final():
                logger.debug(
                    "Ignoring %s for %s: it is already %s.", state.name, self.future.name, old.name
                )
            return False
        self.flow_run.on_task_run_state(self, old, state)
        return True

    def _finish(self, state: State[Any]) -> bool:
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()
        return self._transition(state)

    # -- starting ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the run: now, or when the futures it was given as arguments are final."""
        upstream: list[RunFuture[Any]] = []
        for a in self.args:
            if isinstance(a, RunFuture) or isinstance(a, _CONTAINERS):
                collect_futures(a, upstream)
        for a in self.kwargs.values():
            if isinstance(a, RunFuture) or isinstance(a, _CONTAINERS):
                collect_futures(a, upstream)
        if not upstream:
            self._launch()
            return
        for f in upstream:
            f._observed = True
        chained = self._chain_values(upstream)
        if chained is not None:
            self.chained = upstream
            self._launch(chained)
            return
        _when_all_done(upstream, lambda: self._resolve_upstream(upstream))

    def _chain_values(self, upstream: list[RunFuture[Any]]) -> dict[int, Any] | None:
        """
        On a runner with native futures, the values to launch with at once: upstream runs that
        are still running pass as :class:`PendingResult` (the runner hands their backend
        handle to the backend, which orders the work). None when the run must wait instead:
        the runner cannot chain, this run has a timeout (it would count the upstream's time),
        or an upstream run could still be retried (its first attempt may not be its last).
        """
        runner = self.runner
        if not runner.capabilities.native_futures or self.options.timeout_seconds is not None:
            return None
        values: dict[int, Any] = {}
        for f in upstream:
            state = f._state
            if state.type is StateType.COMPLETED:
                values[id(f)] = state.data
                continue
            run = f._run
            attempt = run.attempt if run is not None else None
            if (
                run is None
                or attempt is None
                or run.runner is not runner
                or run.options.retries
                or run.options.crash_retries
                or run.timer is not None
            ):
                return None
            handle = runner.upstream_handle(attempt)
            if handle is None:
                return None
            values[id(f)] = PendingResult(f, handle)
        return values

    def _resolve_upstream(self, upstream: list[RunFuture[Any]]) -> None:
        if self.future.done():  # cancelled while waiting
            return
        values: dict[int, Any] = {}
        native = self.runner.capabilities.native_futures
        for f in upstream:
            state = f._state
            if state.type is not StateType.COMPLETED:
                self._finish(_not_run(f, self.future.name))
                return
            data = state.data
            if isinstance(data, ResultRef) and not native:
                try:
                    data = data.get()
                except BaseException as exc:
                    self._finish(
                        Crashed(
                            f"The result of upstream run {f.name!r} could not be fetched: "
                            f"{type(exc).__name__}: {exc}",
                            reason="upstream-result",
                            exc=exc,
                        )
                    )
                    return
            values[id(f)] = data
        self.args = substitute(self.args, values)
        self.kwargs = substitute(self.kwargs, values)
        self.chained = None
        self._launch()

    def _launch(self, values: dict[int, Any] | None = None) -> None:
        if self.future.done():
            return
        if self.chained is not None and values is None:  # a retry of a chained run
            self._resolve_upstream(self.chained)
            return
        self.attempts += 1
        args, kwargs = self.args, self.kwargs
        if values is not None:
            args, kwargs = substitute(args, values), substitute(kwargs, values)
        attempt = Attempt(self, self.attempts, self.task.fn, args, kwargs, self.context)
        with _lock:
            self.attempt = attempt
        timeout = self.options.timeout_seconds
        if timeout is not None:
            self.timer = call_later(timeout, self._on_deadline, attempt)
        try:
            self.runner.submit(attempt)
        except BaseException as exc:
            self.on_attempt_end(
                attempt,
                Crashed(
                    f"Runner {self.runner.name!r} could not accept {self.future.name!r}: "
                    f"{type(exc).__name__}: {exc}",
                    reason="backend-error",
                    exc=exc,
                ),
            )
            if not isinstance(exc, Exception):
                raise

    # -- reports from the runner ------------------------------------------------------------

    def on_attempt_start(self, attempt: Attempt) -> None:
        """The runner started executing ``attempt``."""
        if self.attempt is attempt:
            self._transition(_RUNNING)

    def on_attempt_end(self, attempt: Attempt, state: State[Any]) -> None:
        """The runner reports how ``attempt`` ended."""
        with _lock:
            if self.attempt is not attempt:
                logger.debug(
                    "Ignoring a late %s of attempt %d of %s.",
                    state.name,
                    attempt.number,
                    self.future.name,
                )
                return
            self.attempt = None
        if self.chained is not None and state.type is not StateType.COMPLETED:
            # It ran chained to upstream runs: if one of them did not complete, that is why.
            upstream = self.chained
            _when_all_done(upstream, lambda: self._after_chained(upstream, state))
            return
        self._after_attempt(state)

    def _after_chained(self, upstream: list[RunFuture[Any]], state: State[Any]) -> None:
        for f in upstream:
            if f._state.type is not StateType.COMPLETED:
                self._finish(_not_run(f, self.future.name))
                return
        if state.type is StateType.CRASHED:
            # The upstream runs completed after all (a backend may have rerun one whose first
            # try never started), so the crash may be the chaining's: run once more, unchained.
            self._resolve_upstream(upstream)
            return
        self._after_attempt(state)

    def _after_attempt(self, state: State[Any]) -> None:
        # `retries` applies to FAILED attempts only, `crash_retries` to CRASHED ones only.
        opts = self.options
        if state.type is StateType.FAILED:
            self.failures += 1
            if self.failures <= opts.retries:
                self._retry(state, opts.retry_delay_seconds)
                return
        elif state.type is StateType.CRASHED:
            self.crashes += 1
            if self.crashes <= opts.crash_retries:
                self._retry(state, 0.0)
                return
        self._finish(state)

    def _retry(self, state: State[Any], delay: float) -> None:
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()
        if not self._transition(
            Retrying(f"Attempt {self.attempts} ended {state.name}: {state.message}")
        ):
            return
        if delay > 0:
            self.timer = call_later(delay, self._launch)
        else:
            self._launch()

    def _on_deadline(self, attempt: Attempt) -> None:
        with _lock:
            if self.attempt is not attempt:
                return
            self.attempt = None
        self.timer = None
        stopped = self._stop_work(attempt)
        timeout = self.options.timeout_seconds
        message = f"{self.future.name!r} did not finish within its timeout of {timeout} s"
        if not stopped:
            message += f"; runner {self.runner.name!r} cannot stop it, so it may still be running"
        state = TimedOut(message + ".", stopped=stopped)
        if not stopped:
            self.flow_run.warn_not_stopped(self, message)
        self._after_attempt(state)

    def _stop_work(self, attempt: Attempt) -> bool:
        try:
            return bool(self.runner.cancel(attempt))
        except Exception:
            logger.exception("Runner %r failed to cancel %s.", self.runner.name, attempt)
            return False

    # -- cancelling -------------------------------------------------------------------------

    def cancel(self, message: str = "") -> bool:
        """Cancel the run; see :meth:`RunFuture.cancel`."""
        with _lock:
            attempt, self.attempt = self.attempt, None
        stopped = True if attempt is None else self._stop_work(attempt)
        return self._finish(
            Cancelled(
                message
                or f"{self.future.name!r} was cancelled"
                + ("" if stopped else "; its work could not be stopped and may still be running")
                + ".",
                stopped=stopped,
            )
        )


def _not_run(upstream: RunFuture[Any], name: str) -> State[Any]:
    state = upstream._state
    detail = f" ({state.message})" if state.message else ""
    return NotRun(
        f"Upstream run {upstream.name!r} ended {state.name}{detail}, so {name!r} did not run."
    )


def _when_all_done(futures: list[RunFuture[Any]], then: Callable[[], object]) -> None:
    """Call ``then()`` once, when every future is final (at once if they all are)."""
    waiting = [len(futures)]
    lock = threading.Lock()

    def one_done(_f: RunFuture[Any]) -> None:
        with lock:
            waiting[0] -= 1
            last = waiting[0] == 0
        if last:
            then()

    for f in futures:
        f.add_done_callback(one_done)


_PENDING = Pending()
_RUNNING = Running()
