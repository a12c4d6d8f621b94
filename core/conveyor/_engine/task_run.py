"""
The task-run engine: the state machine of one task run — its attempts, retries, deadline,
dependencies and cancellation.

The engine is the only writer of a run's state. Runners execute attempts and report how each
ended; the engine decides the run's state from that, and the first final state wins: a late
report after a timeout or a cancel is logged and dropped.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from conveyor._engine.caching import end, look_up
from conveyor._engine.dependencies import not_run, substitute, upstream_of, when_all_done
from conveyor._engine.owner import RunOwner
from conveyor._timers import TimerHandle, call_later
from conveyor.futures import RunFuture
from conveyor.options import TaskOptions
from conveyor.run_record import RunDetail
from conveyor.runners.attempt import Attempt, PendingResult
from conveyor.runners.protocol import Runner
from conveyor.states import (
    Cancelled,
    Crashed,
    CrashReason,
    Pending,
    ResultRef,
    Retrying,
    Running,
    State,
    StateType,
    TimedOut,
)

__all__ = ["RunOwner", "TaskRun"]

logger = logging.getLogger("conveyor")

_ids = itertools.count(1)
_lock = threading.Lock()


class TaskRun:
    """
    One run of a task inside a flow run: its future, its options and its current attempt.
    """

    __slots__ = (
        "args",
        "attempt",
        "attempts",
        "cache",
        "cache_key",
        "cache_release",
        "chained",
        "context",
        "crashes",
        "detail",
        "failures",
        "first_start",
        "fn",
        "future",
        "is_async",
        "kwargs",
        "options",
        "owner",
        "runner",
        "timer",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        is_async: bool,
        options: TaskOptions,
        owner: RunOwner,
        runner: Runner,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.fn = fn
        self.is_async = is_async
        self.options = options
        self.owner = owner
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
        #: When the first attempt started (monotonic seconds; 0.0 until then).
        self.first_start = 0.0
        self.detail: RunDetail | None = RunDetail() if owner.record_runs else None
        #: The flow run's caching (a ``RunCache``; None: off for this task), this run's key, the
        #: hold on it (an owner may have no ``cache`` at all).
        cache = getattr(owner, "cache", None)
        self.cache = cache if cache is not None and cache.enabled_for(options.cache) else None
        self.cache_key: str | None = None
        self.cache_release: Callable[[], None] | None = None
        name = owner.next_task_run_name(options.name)
        self.future: RunFuture[Any] = RunFuture(f"{owner.id}.{next(_ids)}", name, _PENDING, self)

    # -- state changes ----------------------------------------------------------------------

    def _transition(self, state: State[Any]) -> bool:
        if self.cache and self.cache_release and state.is_final() and not self.future.done():
            end(self.cache, self, state)  # write before the future settles: its waiter may read
        old = self.future.peek()
        if not self.future.settle(state):
            if state.is_final():
                logger.debug(
                    "Ignoring %s for %s: it is already %s.", state.name, self.future.name, old.name
                )
            return False
        self.owner.on_task_run_state(self, old, state)
        return True

    def _finish(self, state: State[Any]) -> bool:
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()
        return self._transition(state)

    # -- starting ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the run: now, or when the futures it was given as arguments are final."""
        upstream = upstream_of(self.args, self.kwargs)
        for f in upstream:
            f.mark_observed()
        if self._cached(final=not upstream):
            return
        if not upstream:
            self._launch()
            return
        if self.detail is not None:
            self.detail.upstream = tuple(f.id for f in upstream)
        chained = self._chain_values(upstream)
        if chained is not None:
            self.chained = upstream
            self._launch(chained)
            return
        when_all_done(upstream, lambda: self._resolve_upstream(upstream))

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
            state = f.peek()
            if state.type is StateType.COMPLETED:
                values[id(f)] = state.data
                continue
            run = f.owner
            attempt = run.attempt if isinstance(run, TaskRun) else None
            if (
                not isinstance(run, TaskRun)
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
            state = f.peek()
            if state.type is not StateType.COMPLETED:
                self._finish(not_run(f, self.future.name))
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
                            reason=CrashReason.UPSTREAM_RESULT,
                            exc=exc,
                        )
                    )
                    return
            values[id(f)] = data
        self.args = substitute(self.args, values)
        self.kwargs = substitute(self.kwargs, values)
        self.chained = None
        if self.cache_key is None and self._cached(final=True):
            return
        self._launch()

    def _cached(self, *, final: bool) -> bool:
        """Whether the run finished from the result store (``final``: its values are in)."""
        hit = None if self.cache is None else look_up(self.cache, self, final=final)
        return hit is not None and (self._finish(hit) or True)

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
        opts = self.options
        attempt = Attempt(
            self,
            self.attempts,
            self.fn,
            args,
            kwargs,
            self.context,
            name=self.future.name,
            task_name=opts.name,
            flow_run_name=self.owner.name,
            is_async=self.is_async,
            timeout=opts.timeout_seconds,
            resources=opts.resources,
            runner_options=opts.runner_options,
            wants_where=self.detail is not None,
        )
        with _lock:
            self.attempt = attempt
        timeout = opts.timeout_seconds
        if timeout is not None:
            self.timer = call_later(timeout, self._on_deadline, attempt)
        try:
            self.runner.submit(attempt)
        except BaseException as exc:
            self.attempt_ended(
                attempt,
                Crashed(
                    f"Runner {self.runner.name!r} could not accept {self.future.name!r}: "
                    f"{type(exc).__name__}: {exc}",
                    reason=CrashReason.BACKEND_ERROR,
                    exc=exc,
                ),
            )
            if not isinstance(exc, Exception):
                raise

    # -- reports from the runner ------------------------------------------------------------

    def is_current(self, attempt: Attempt) -> bool:
        """Whether ``attempt`` is this run's attempt in flight."""
        return self.attempt is attempt and not self.future.done()

    def attempt_started(self, attempt: Attempt) -> None:
        """The runner started executing ``attempt``."""
        if self.attempt is attempt:
            now = time.monotonic()
            if not self.first_start:
                self.first_start = now
            if self.detail is not None:
                self.detail.current_start = now
                if attempt.where is None and attempt.in_process:  # we run in its thread
                    attempt.where = f"thread {threading.current_thread().name}"
            self._transition(_RUNNING)

    def _note_end(self, attempt: Attempt, state: State[Any]) -> None:
        if self.detail is not None:
            self.detail.attempt_over(attempt.number, time.monotonic(), attempt.place(), state.name)

    def attempt_ended(self, attempt: Attempt, state: State[Any]) -> None:
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
        self._note_end(attempt, state)
        if self.chained is not None and state.type is not StateType.COMPLETED:
            # It ran chained to upstream runs: if one of them did not complete, that is why.
            upstream = self.chained
            when_all_done(upstream, lambda: self._after_chained(upstream, state))
            return
        self._after_attempt(state)

    def _after_chained(self, upstream: list[RunFuture[Any]], state: State[Any]) -> None:
        for f in upstream:
            if f.peek().type is not StateType.COMPLETED:
                self._finish(not_run(f, self.future.name))
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
        self._note_end(attempt, state)
        if not stopped:
            self.owner.warn_not_stopped(self, message)
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
        state = Cancelled(
            message
            or f"{self.future.name!r} was cancelled"
            + ("" if stopped else "; its work could not be stopped and may still be running")
            + ".",
            stopped=stopped,
        )
        if attempt is not None:
            self._note_end(attempt, state)
        return self._finish(state)


_PENDING = Pending()
_RUNNING = Running()
