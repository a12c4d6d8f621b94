"""
The task-run engine on its own: a TaskRun driven by a runner the test reports for by hand, and
an owner that records what the engine tells it. No flow, no backend.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from conveyor import CrashReason, StateType
from conveyor._engine import TaskRun
from conveyor.options import make_options
from conveyor.runners import Attempt, Capabilities, ConcurrencyType, Runner
from conveyor.states import State
from conveyor.testing import wait_until


@attrs.define(kw_only=True, eq=False)
class HandRunner(Runner):
    """Keeps the attempts it is given; the test reports their ends."""

    name = "hand"
    concurrency = ConcurrencyType.CONCURRENT
    capabilities = Capabilities()

    attempts: list[Attempt] = attrs.field(factory=list, init=False)
    cancels: list[Attempt] = attrs.field(factory=list, init=False)
    stops: bool = attrs.field(default=False, init=False)

    def execute(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    def cancel(self, attempt: Attempt) -> bool:
        self.cancels.append(attempt)
        return self.stops


class Owner:
    """A RunOwner that records every state change and warning."""

    id = "own"
    name = "owner-1"
    record_runs = False

    def __init__(self) -> None:
        self.changes: list[tuple[str, str, str]] = []
        self.warnings: list[str] = []
        self.count = 0

    def next_task_run_name(self, task_name: str) -> str:
        self.count += 1
        return f"{task_name}-{self.count}"

    def on_task_run_state(self, run: TaskRun, old: State[Any], new: State[Any]) -> None:
        self.changes.append((run.future.name, old.name, new.name))

    def warn_not_stopped(self, run: TaskRun, message: str) -> None:
        self.warnings.append(message)


def fn(x: int = 0) -> int:
    return x


def _run(runner: HandRunner, owner: Owner, *args: Any, **options: Any) -> TaskRun:
    run = TaskRun(fn, False, make_options("task 'fn'", fn, **options), owner, runner, args, {})
    run.start()
    return run


@pytest.fixture
def runner() -> Any:
    with HandRunner() as started:
        yield started


class TestAttempts:
    def test_an_attempt_carries_what_a_runner_needs(self, runner: HandRunner) -> None:
        """The attempt holds the call, the names, the timeout and the resources, not the run."""
        owner = Owner()
        _run(runner, owner, 5, timeout_seconds=30, runner_options={"k": 1})
        (attempt,) = runner.attempts
        assert (attempt.name, attempt.task_name, attempt.flow_run_name) == ("fn-1", "fn", "owner-1")
        assert (attempt.fn, attempt.args, attempt.timeout) == (fn, (5,), 30.0)
        assert dict(attempt.runner_options) == {"k": 1}
        assert not hasattr(attempt, "run")
        attempt.succeed(5)

    def test_running_then_completed_and_the_owner_hears_each(self, runner: HandRunner) -> None:
        """mark_running makes the run RUNNING; succeed makes it COMPLETED; the owner is told
        of both changes, in order."""
        owner = Owner()
        run = _run(runner, owner)
        (attempt,) = runner.attempts
        attempt.mark_running()
        assert run.future.running()
        attempt.succeed(7)
        assert run.future.result(timeout=1) == 7
        assert owner.changes == [("fn-1", "Pending", "Running"), ("fn-1", "Running", "Completed")]
        assert attempt.finished

    def test_the_first_final_state_wins(self, runner: HandRunner) -> None:
        """A report after the run is final is ignored: the state does not change."""
        run = _run(runner, Owner())
        (attempt,) = runner.attempts
        attempt.succeed(1)
        attempt.crash("late", reason=CrashReason.WORKER_DIED)
        assert run.future.result(timeout=1) == 1


class TestRetries:
    def test_retries_apply_to_failures_only(self, runner: HandRunner) -> None:
        """A FAILED attempt is retried up to `retries` times, each a new attempt; a CRASHED
        attempt is not retried by `retries`."""
        run = _run(runner, Owner(), retries=1)
        runner.attempts[0].fail(ValueError("once"))
        assert len(runner.attempts) == 2 and runner.attempts[1].number == 2
        runner.attempts[1].crash("gone", reason=CrashReason.WORKER_DIED)
        state = run.future.wait(1)
        assert state is not None and state.reason is CrashReason.WORKER_DIED

    def test_crash_retries_apply_to_crashes_only(self, runner: HandRunner) -> None:
        """A CRASHED attempt is retried under `crash_retries`; a FAILED one is final."""
        run = _run(runner, Owner(), crash_retries=1)
        runner.attempts[0].crash("gone", reason=CrashReason.WORKER_DIED)
        assert len(runner.attempts) == 2
        runner.attempts[1].fail(ValueError("code"))
        state = run.future.wait(1)
        assert state is not None and state.type is StateType.FAILED


class TestDeadlinesAndCancel:
    @pytest.mark.parametrize("stops", [True, False])
    def test_deadline_times_the_run_out(self, runner: HandRunner, stops: bool) -> None:
        """Past its timeout the run is TimedOut whatever the runner does; the runner is asked
        to stop the work, and the owner warns when it could not."""
        runner.stops = stops
        owner = Owner()
        run = _run(runner, owner, timeout_seconds=0.05)
        state = run.future.wait(10)
        assert state is not None and state.name == "TimedOut"
        assert state.reason == ("stopped" if stops else "not-stopped")
        assert runner.cancels == runner.attempts
        assert bool(owner.warnings) is not stops
        runner.attempts[0].succeed(1)  # a late result changes nothing
        assert run.future.peek().name == "TimedOut"

    def test_cancel_asks_the_runner_and_is_final(self, runner: HandRunner) -> None:
        """Cancelling a run in flight asks the runner to stop it and ends it CANCELLED."""
        run = _run(runner, Owner())
        assert run.future.cancel() is True
        assert run.future.peek().type is StateType.CANCELLED
        assert runner.cancels == runner.attempts
        assert run.future.cancel() is False


class TestDependencies:
    def test_downstream_waits_and_gets_the_value(self, runner: HandRunner) -> None:
        """A run given an upstream future starts once it completed, with its value in place,
        also inside containers."""
        owner = Owner()
        up = _run(runner, owner)
        down = TaskRun(
            fn, False, make_options("t", fn), owner, runner, ([up.future, {"k": up.future}],), {}
        )
        down.start()
        assert len(runner.attempts) == 1
        runner.attempts[0].succeed(3)
        assert wait_until(lambda: len(runner.attempts) == 2, 5, what="the downstream attempt")
        assert runner.attempts[1].args == ([3, {"k": 3}],)
        assert up.future.observed

    def test_failed_upstream_means_not_run(self, runner: HandRunner) -> None:
        """A run whose upstream run did not complete ends NotRun and never starts."""
        owner = Owner()
        up = _run(runner, owner)
        down = TaskRun(fn, False, make_options("t", fn), owner, runner, (up.future,), {})
        down.start()
        runner.attempts[0].fail(ValueError("no"))
        state = down.future.wait(5)
        assert state is not None and state.name == "NotRun"
        assert len(runner.attempts) == 1
