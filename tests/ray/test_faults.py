"""Faults on a real Ray cluster, mapped as the fault table of plugins/ray_runner/README.md says."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_ray")

from conveyor import CrashedRun, State, StateType, flow, task
from conveyor.testing import wait_until
from conveyor.testing._tasks import heartbeat
from conveyor_ray import RayRunner
from conveyor_ray._session import Session
from tests.ray import _tasks as rt

BOUND = 60.0


def _heartbeat_stops(path: str, limit: float = 15.0) -> bool:
    """Whether the heartbeat at ``path`` stops within ``limit`` s: no beat for 0.5 s."""

    def quiet() -> bool:
        before = rt.count(path)
        time.sleep(0.5)  # the window in which no beat may come, not synchronisation
        return rt.count(path) == before

    return wait_until(quiet, limit, interval=0)


def _run_one(runner: RayRunner, task: Any, *args: Any) -> tuple[State[Any], list[State[Any]]]:
    """Submit the faulty run, then four 0.3 s siblings; return all their final states."""

    @flow(runner=runner)
    def probe() -> tuple[State[Any], list[State[Any]]]:
        bad = task.submit(*args)
        others = rt.slow_ok.map([0.3] * 4)
        state = bad.wait(BOUND)
        assert state is not None
        rest = [f.wait(BOUND) for f in others]
        return state, rest  # type: ignore[return-value]

    return probe()


class TestUserErrors:
    def test_exception_keeps_type_and_clean_message(self, runner: RayRunner) -> None:
        """A raising task is FAILED with the original type, no `ray::` header, no colours."""
        state, rest = _run_one(runner, rt.raise_value, "x")
        assert state.type is StateType.FAILED
        exc = state.result(raise_on_failure=False)
        assert type(exc) is ValueError
        assert str(exc) == "x"
        assert "ray::" not in state.message and "\x1b[" not in state.message
        assert state.traceback is not None and "raise_value" in state.traceback
        assert all(s.is_completed() for s in rest)

    def test_custom_exception_class_survives(self, runner: RayRunner) -> None:
        """An exception class defined in the tests comes back as that very class."""
        state, _ = _run_one(runner, rt.raise_custom, "mine")
        exc = state.result(raise_on_failure=False)
        assert type(exc) is rt.CustomError and str(exc) == "mine"

    def test_sys_exit_is_crashed_and_worker_survives(self, runner: RayRunner) -> None:
        """sys.exit() in a task is CRASHED(system-exit); the runner keeps working."""
        state, rest = _run_one(runner, rt.exit_code, 3)
        assert state.type is StateType.CRASHED and state.reason == "system-exit"
        assert all(s.is_completed() for s in rest)


class TestWorkerDeath:
    @pytest.mark.parametrize("killer", [rt.hard_exit, rt.kill_self], ids=["os._exit", "SIGKILL"])
    def test_dead_worker_is_crashed_once(
        self, runner: RayRunner, tmp_path: Path, killer: Any
    ) -> None:
        """A task that kills its worker is CRASHED(worker-died) within 15 s, ran once, and
        the other runs complete."""
        path = str(tmp_path / "runs")
        started = time.monotonic()
        state, rest = _run_one(runner, killer, path)
        assert time.monotonic() - started < 15
        assert state.type is StateType.CRASHED and state.reason == "worker-died"
        assert "ray::" not in state.message and "\x1b[" not in state.message
        assert all(s.is_completed() for s in rest)
        assert rt.count(path) == 1  # Ray's own retries are off

    def test_crash_retries_rerun_exactly_as_asked(self, runner: RayRunner, tmp_path: Path) -> None:
        """crash_retries=1 reruns a dead attempt once (2 executions); 0 means 1 execution."""
        again = rt.exit_first_time.with_options(crash_retries=1)
        never = rt.hard_exit.with_options(crash_retries=0)
        p1, p2 = str(tmp_path / "a"), str(tmp_path / "b")

        @flow(runner=runner)
        def retrying() -> tuple[State[Any], State[Any]]:
            return again.submit(p1).wait(BOUND), never.submit(p2).wait(BOUND)  # type: ignore[return-value]

        first, second = retrying()
        assert first.is_completed() and first.result() == 2 and rt.count(p1) == 2
        assert second.is_crashed() and rt.count(p2) == 1


class TestSerialization:
    def test_returned_generator_is_never_its_first_item(self, runner: RayRunner) -> None:
        """A task returning a generator is CRASHED(result-serialization), not its first item."""
        state, _ = _run_one(runner, rt.make_generator, 3)
        assert state.type is StateType.CRASHED and state.reason == "result-serialization"
        assert "generator" in state.message

    def test_returned_lock_is_crashed(self, runner: RayRunner) -> None:
        """A result that cannot be pickled is CRASHED(result-serialization), naming its type."""
        state, rest = _run_one(runner, rt.make_lock)
        assert state.reason == "result-serialization" and "lock" in state.message
        assert all(s.is_completed() for s in rest)

    def test_unpicklable_argument_crashes_without_raising(
        self, runner: RayRunner, tmp_path: Path
    ) -> None:
        """submit() with an unpicklable argument does not raise; the run is CRASHED at once
        with the type named, and its body never runs."""
        path = str(tmp_path / "ran")

        @flow(runner=runner)
        def bad_arg() -> State[Any]:
            future = rt.takes.submit(threading.Lock(), path)
            state = future.wait(BOUND)
            assert state is not None
            return state

        state = bad_arg()
        assert state.type is StateType.CRASHED and state.reason == "argument-serialization"
        assert "lock" in state.message
        assert rt.count(path) == 0

    def test_unpicklable_task_function_crashes_without_raising(self, runner: RayRunner) -> None:
        """A task function that does not pickle (it closes over a lock) crashes its run with the
        type named; submit() does not raise."""
        lock = threading.Lock()

        @task
        def holds_lock(x: int) -> int:
            with lock:
                return x

        @flow(runner=runner)
        def bad_function() -> State[Any]:
            return holds_lock.submit(1).wait(BOUND)  # type: ignore[return-value]

        state = bad_function()
        assert state.type is StateType.CRASHED and state.reason == "argument-serialization"
        assert "lock" in state.message

    def test_argument_that_fails_to_unpickle_on_the_worker(
        self, runner: RayRunner, tmp_path: Path
    ) -> None:
        """An argument that pickles but cannot be unpickled on the worker is CRASHED
        (argument-deserialization), and the body never runs."""
        path = str(tmp_path / "ran")
        state, rest = _run_one(runner, rt.takes, rt.Unpicklable(), path)
        assert state.type is StateType.CRASHED and state.reason == "argument-deserialization"
        assert rt.count(path) == 0
        assert all(s.is_completed() for s in rest)


class TestStopping:
    def test_timeout_is_on_time_and_stops_the_task(self, runner: RayRunner, tmp_path: Path) -> None:
        """A run past its timeout is TimedOut on time, and its Ray task really stops."""
        path = str(tmp_path / "beats")
        beating = heartbeat.with_options(timeout_seconds=1.0)

        @flow(runner=runner)
        def timing_out() -> tuple[State[Any], float]:
            started = time.monotonic()
            state = beating.submit(path, 600, 0.05).wait(BOUND)
            assert state is not None
            return state, time.monotonic() - started

        state, took = timing_out()
        assert state.name == "TimedOut" and state.reason == "stopped"
        assert took < 1.0 + 2.0
        assert _heartbeat_stops(path)

    def test_task_swallowing_keyboard_interrupt_is_killed(
        self, runner: RayRunner, tmp_path: Path
    ) -> None:
        """A cancelled task that ignores KeyboardInterrupt is force-killed after the grace."""
        path = str(tmp_path / "beats")
        quick = RayRunner(address=runner.address, cancel_grace_seconds=1.0)

        @flow(runner=quick)
        def cancelling() -> State[Any]:
            run = rt.stubborn_heartbeat.submit(path, 600, 0.05)
            deadline = time.monotonic() + BOUND
            while rt.count(path) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            run.cancel()
            state = run.wait(BOUND)
            assert state is not None
            # The flow stays open long enough for the escalation to happen in-flight.
            assert _heartbeat_stops(path, limit=10.0)
            return state

        state = cancelling()
        assert state.type is StateType.CANCELLED and state.reason == "stopped"

    def test_cancel_pending_never_runs(self, runner: RayRunner, tmp_path: Path) -> None:
        """Cancelling runs queued behind a full cluster ends them CANCELLED; they never run."""
        path = str(tmp_path / "ran")
        hog = rt.slow_ok.with_options(resources={"CPU": 2})

        @flow(runner=runner)
        def cancelling() -> list[State[Any]]:
            blocker = hog.submit(2.0)
            queued = [rt.takes.submit(i, path) for i in range(3)]
            for f in queued:
                f.cancel()
            blocker.result(timeout=BOUND)
            return [f.wait(BOUND) for f in queued]  # type: ignore[misc]

        states = cancelling()
        assert all(s.type is StateType.CANCELLED for s in states)
        time.sleep(0.5)  # not synchronisation: gives a wrongly-started body time to show
        assert rt.count(path) == 0


class TestResultsAfterwards:
    def test_fetching_a_lost_result_raises_crashed_run(self, runner: RayRunner) -> None:
        """A completed result whose session is gone raises CrashedRun(backend-lost)."""

        @flow(runner=runner)
        def one() -> State[Any]:
            return rt.pair.submit(1, 1).wait(BOUND)  # type: ignore[return-value]

        state = one()
        assert state.result() == [1, 1]  # the process's session is still open
        gone = Session("127.0.0.1:1", owned=False, started_local=False, in_worker=False)
        gone.lost = "gone for the test"
        state.data.session = gone
        with pytest.raises(CrashedRun, match="gone for the test") as info:
            state.result()
        assert info.value.reason == "backend-lost"
        assert os.getpid()


class TestRunnerFaults:
    def test_a_report_that_raises_crashes_the_run(
        self, runner: RayRunner, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A bug while reporting an outcome crashes that run; it is never left in flight. Covered
        for runs reported by a Ray callback, by a poll (13 in flight at once: 0.5 s each) and
        by the dispatcher's wait in Ray (a downstream run the dispatcher submitted).
        """
        import conveyor_ray._report as module

        real = module.report_outcome

        def broken(attempt: Any, outcome: Any, value: Any) -> None:
            if value in ("ok", 3):  # slow_ok's runs, and the downstream add(2, 1)
                raise RuntimeError("report exploded")
            real(attempt, outcome, value)

        monkeypatch.setattr(module, "report_outcome", broken)

        @flow(runner=runner)
        def both() -> tuple[list[State[Any]], State[Any], State[Any]]:
            upstream = rt.add.submit(1, 1)
            downstream = rt.add.submit(upstream, 1)
            chain = upstream.wait(BOUND), downstream.wait(BOUND)
            slow = rt.slow_ok.map([0.5] * 13)
            return [f.wait(BOUND) for f in slow], *chain  # type: ignore[return-value,misc]

        slow, upstream, downstream = both()
        assert upstream.type is StateType.COMPLETED
        assert len(slow) == 13
        for state in [*slow, downstream]:
            assert state.type is StateType.CRASHED
            assert state.reason == "backend-error"
            assert "report exploded" in state.message
