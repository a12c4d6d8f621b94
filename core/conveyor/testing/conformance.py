"""
The runner conformance suite.

Subclass :class:`RunnerConformance` in a test module and give it a ``runner`` fixture that
returns an unstarted runner::

    import pytest
    from conveyor.testing import RunnerConformance
    from conveyor_mine import MyRunner

    class TestMyRunner(RunnerConformance):
        @pytest.fixture
        def runner(self):
            return MyRunner()

Every case runs real flows on the runner. A case that the runner's declared
:class:`~conveyor.Capabilities` exclude is skipped with the reason, never passed silently.
"""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor.exceptions import RunnerNotStartedError
from conveyor.flows import flow
from conveyor.futures import RunFuture
from conveyor.plugins.manager import PluginHost, get_host, use_host
from conveyor.runners.protocol import ConcurrencyType, Runner
from conveyor.states import CrashReason, State, StateType
from conveyor.testing import _tasks as t
from conveyor.testing._promises import RunnerPromises
from conveyor.testing._recording import Recorder, assert_reasons_are_members
from conveyor.testing._waiting import wait_until

__all__ = ["RunnerConformance"]

# Generous bounds: they stop a broken runner from hanging the suite; they are not timings.
BOUND = 30.0


class RunnerConformance(RunnerPromises):
    """
    The behaviours every conveyor runner must show. Provide a ``runner`` fixture.
    """

    @pytest.fixture
    def runner(self) -> Runner:
        raise NotImplementedError("Define a `runner` fixture returning an unstarted runner.")

    @pytest.fixture
    def recorder(self) -> Any:
        recorder = Recorder()
        host = PluginHost(entry_points=False, extra_plugins=[("recorder", recorder)])
        with use_host(host):
            yield recorder
        assert_reasons_are_members(recorder)

    @pytest.fixture(autouse=True)
    def _crash_reasons_are_members(self) -> Any:
        """Every case: each CRASHED state the runner reports has a CrashReason member."""
        watcher = Recorder()
        host = get_host()
        host.register(watcher, name="conveyor-conformance-reasons")
        try:
            yield
        finally:
            host.unregister(watcher)
        assert_reasons_are_members(watcher)

    # -- configuration ----------------------------------------------------------------------

    def test_runner_is_picklable_configuration(self, runner: Runner) -> None:
        """An unstarted runner pickles, and the copy equals the original."""
        clone = pickle.loads(pickle.dumps(runner))
        assert clone == runner
        assert type(clone) is type(runner)
        assert not clone.started

    def test_declares_concurrency_and_capabilities(self, runner: Runner) -> None:
        """The runner declares a name, a concurrency type and its capabilities."""
        assert isinstance(runner.name, str) and runner.name
        assert isinstance(runner.concurrency, ConcurrencyType)
        assert set(runner.capabilities.as_dict()) >= {
            "hard_timeouts",
            "cancel_running",
            "native_futures",
            "resources",
        }

    def test_refuses_to_submit_before_start(self, runner: Runner) -> None:
        """Submitting to a runner that is not started raises a clear error."""

        @flow(runner=runner.duplicate())
        def probe() -> None:
            pass

        probe()
        assert not runner.started
        attempt: Any = type("A", (), {"name": "x-1"})()
        with pytest.raises(RunnerNotStartedError, match="not started"):
            runner.submit(attempt)

    # -- results ----------------------------------------------------------------------------

    def test_results(self, runner: Runner) -> None:
        """Submitted and mapped runs complete with the right values."""

        @flow(runner=runner)
        def sums() -> tuple[int, list[int]]:
            one = t.add.submit(1, 2)
            many = t.add.map([1, 2, 3], [10, 20, 30])
            return one.result(timeout=BOUND), [f.result(timeout=BOUND) for f in many]

        assert sums() == (3, [11, 22, 33])

    def test_async_tasks(self, runner: Runner) -> None:
        """Async tasks run and return their value."""

        @flow(runner=runner)
        def sums() -> list[int]:
            return [f.result(timeout=BOUND) for f in t.async_add.map([1, 2], [3, 4])]

        assert sums() == [4, 6]

    def test_futures_as_arguments(self, runner: Runner) -> None:
        """A future passed to a task is a dependency; the downstream run gets its value."""

        @flow(runner=runner)
        def chain() -> int:
            a = t.add.submit(1, 1)
            b = t.add.submit(a, 10)
            c = t.add.submit(b, y=a)
            return c.result(timeout=BOUND)

        assert chain() == 14

    def test_failed_upstream_is_not_run(self, runner: Runner, tmp_path: Path) -> None:
        """A run whose upstream failed ends FAILED NotRun naming it, and its body never runs."""
        marker = str(tmp_path / "ran")

        @flow(runner=runner)
        def broken() -> State[Any]:
            bad = t.fail.submit("upstream broke")
            state = t.mark.submit(bad, marker).wait(BOUND)
            assert state is not None
            return state

        state = broken()
        assert state.type is StateType.FAILED
        assert state.name == "NotRun"
        assert "fail-1" in state.message
        assert not Path(marker).exists()

    # -- failures and crashes ---------------------------------------------------------------

    def test_failure_keeps_type_and_message(self, runner: Runner) -> None:
        """A task that raises ends FAILED with its exception's type and message."""

        @flow(runner=runner)
        def failing() -> State[Any]:
            state = t.fail.submit("boom").wait(BOUND)
            assert state is not None
            return state

        state = failing()
        assert state.type is StateType.FAILED
        exc = state.result(raise_on_failure=False)
        assert type(exc).__name__ == "ConformanceError"
        assert isinstance(exc, ValueError)
        assert str(exc) == "boom"
        assert "\x1b[" not in str(exc)

    def test_sys_exit_is_a_crash(self, runner: Runner) -> None:
        """A task that calls sys.exit ends CRASHED, and the runner keeps working."""

        @flow(runner=runner)
        def exiting() -> tuple[State[Any], int]:
            state = t.exit_task.submit(3).wait(BOUND)
            assert state is not None
            return state, t.add.submit(2, 2).result(timeout=BOUND)

        state, after = exiting()
        assert state.type is StateType.CRASHED
        assert state.reason is CrashReason.SYSTEM_EXIT
        assert after == 4

    def test_unchecked_failure_fails_the_flow(self, runner: Runner) -> None:
        """A flow whose submitted run failed unchecked ends FAILED, naming that run."""

        @flow(runner=runner)
        def careless() -> int:
            t.fail.submit("nobody looks")
            return 1

        state = careless(return_state=True)
        assert state.is_failed()
        assert "fail-1" in state.message

    # -- retries ----------------------------------------------------------------------------

    def test_retries(self, runner: Runner, tmp_path: Path) -> None:
        """A run that fails twice with retries=2 completes on its third attempt."""
        path = str(tmp_path / "flaky")
        flaky = t.flaky.with_options(retries=2)

        @flow(runner=runner)
        def retrying() -> int:
            return flaky.submit(path, 2).result(timeout=BOUND)

        assert retrying() == 3
        assert t.count(path) == 3

    def test_retries_exhausted(self, runner: Runner, tmp_path: Path) -> None:
        """A run that keeps failing ends FAILED after 1 + retries attempts, no more."""
        path = str(tmp_path / "flaky")
        flaky = t.flaky.with_options(retries=1)

        @flow(runner=runner)
        def retrying() -> State[Any]:
            state = flaky.submit(path, 5).wait(BOUND)
            assert state is not None
            return state

        assert retrying().is_failed()
        assert t.count(path) == 2

    # -- timeouts and cancellation ----------------------------------------------------------

    def test_timeout_is_timed_out(self, runner: Runner, tmp_path: Path) -> None:
        """A run past its timeout ends FAILED named TimedOut, and the flow does not wait for it."""
        slow = t.sleep_then_mark.with_options(timeout_seconds=0.5)
        path = str(tmp_path / "late")

        @flow(runner=runner)
        def timing_out() -> State[Any]:
            state = slow.submit(5.0, path).wait(BOUND)
            assert state is not None
            return state

        state = timing_out()
        assert state.type is StateType.FAILED
        assert state.name == "TimedOut"
        assert state.reason in {"stopped", "not-stopped"}

    def test_timeout_stops_work(self, runner: Runner, tmp_path: Path) -> None:
        """Where the runner declares hard timeouts, a timed-out run's work really stops."""
        if not runner.capabilities.hard_timeouts:
            pytest.skip(f"runner {runner.name!r} declares no hard timeouts")
        path = str(tmp_path / "beats")
        beating = t.heartbeat.with_options(timeout_seconds=1.0)

        @flow(runner=runner)
        def timing_out() -> tuple[State[Any], bool]:
            state = beating.submit(path, 400, 0.05).wait(BOUND)
            assert state is not None
            # Checked while the runner still runs: stopping the runner must not be what stops it.
            return state, _heartbeat_stops(path)

        state, stopped = timing_out()
        assert state.name == "TimedOut"
        assert state.reason == "stopped"
        assert stopped

    def test_cancel_pending(self, runner: Runner, tmp_path: Path) -> None:
        """Cancelling a run that has not started ends it CANCELLED, and its body never runs."""
        if runner.concurrency is ConcurrencyType.SEQUENTIAL:
            pytest.skip("a sequential runner has no pending runs: each run is final at submit")
        gate = str(tmp_path / "gate")
        marker = str(tmp_path / "ran")

        @flow(runner=runner)
        def cancelling() -> tuple[bool, State[Any]]:
            blocker = t.wait_for_file.submit(gate, 20.0)
            waiting = t.mark.submit(blocker, marker)
            cancelled = waiting.cancel()
            Path(gate).touch()
            blocker.result(timeout=BOUND)
            state = waiting.wait(BOUND)
            assert state is not None
            return cancelled, state

        cancelled, state = cancelling()
        assert cancelled is True
        assert state.type is StateType.CANCELLED
        assert not Path(marker).exists()

    def test_cancel_running(self, runner: Runner, tmp_path: Path) -> None:
        """Where the runner can stop running work, cancel() stops it."""
        if not runner.capabilities.cancel_running:
            pytest.skip(f"runner {runner.name!r} cannot cancel running work")
        path = str(tmp_path / "beats")

        @flow(runner=runner)
        def cancelling() -> tuple[State[Any], bool]:
            run = t.heartbeat.submit(path, 400, 0.05)
            assert wait_until(lambda: t.count(path) >= 2, BOUND)
            run.cancel()
            state = run.wait(BOUND)
            assert state is not None
            # Checked while the runner still runs: stopping the runner must not be what stops it.
            return state, _heartbeat_stops(path)

        state, stopped = cancelling()
        assert state.type is StateType.CANCELLED
        assert state.reason == "stopped"
        assert stopped

    # -- lifecycle --------------------------------------------------------------------------

    def test_two_flow_runs_share_one_runner_object(self, runner: Runner) -> None:
        """One runner object serves two flow runs at once, each with its own started copy."""
        results: dict[int, int] = {}
        errors: list[BaseException] = []

        @flow(runner=runner)
        def summing(k: int) -> int:
            return sum(f.result(timeout=BOUND) for f in t.add.map(range(5), [k] * 5))

        def call(k: int) -> None:
            try:
                results[k] = summing(k)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(k,)) for k in (1, 2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(BOUND)
        assert not errors
        assert results == {1: 15, 2: 20}
        assert not runner.started

    def test_every_run_ends_in_exactly_one_final_state(
        self, runner: Runner, recorder: Recorder, tmp_path: Path
    ) -> None:
        """Every submitted run is final when the flow returns, and became final exactly once."""
        slow = t.sleep_then_mark.with_options(timeout_seconds=0.3)
        flaky = t.flaky.with_options(retries=1)

        futures: list[RunFuture[Any]] = []

        @flow(runner=runner)
        def mixed() -> None:
            futures[:] = [
                t.add.submit(1, 2),
                t.fail.submit("x"),
                flaky.submit(str(tmp_path / "f"), 1),
                slow.submit(3.0, str(tmp_path / "s")),
                t.async_add.submit(1, 1),
            ]
            futures.append(t.identity.submit(futures[1]))

        state = mixed(return_state=True)
        assert state.is_failed()  # the failures were never checked by the body
        assert all(f.done() for f in futures)
        finals = recorder.finals()
        assert sorted(finals) == sorted(f.name for f in futures)
        assert set(finals.values()) == {1}
        assert [f.state.name for f in futures] == [
            "Completed",
            "Failed",
            "Completed",
            "TimedOut",
            "Completed",
            "NotRun",
        ]


def _heartbeat_stops(path: str) -> bool:
    """Whether the heartbeat file stops growing within the bound."""

    def still() -> bool:
        before = t.count(path)
        time.sleep(0.4)
        return t.count(path) == before

    return wait_until(still, 15.0, interval=0.0)
