"""Flows: waiting for every run, honest final states, runners per call, async and nested."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import anyio
import attrs
import pytest

from conveyor import ConfigError, Runner, State, flow, task
from conveyor.plugins import PluginHost, use_host
from conveyor.runners import ConcurrentRunner, SequentialRunner
from conveyor.testing import _tasks as shared
from tests._support import StateRecorder

release = threading.Event()


@task
def slow_value(x: int) -> int:
    release.wait(30)
    return x


@pytest.fixture(autouse=True)
def _release() -> Any:
    release.clear()
    yield
    release.set()


class TestFlowState:
    def test_returns_the_body_value(self) -> None:
        """Calling a flow returns what its body returned."""

        @flow
        def f(x: int) -> int:
            return shared.add.submit(x, 1).result()

        assert f(1) == 2

    def test_return_state(self) -> None:
        """return_state=True returns the final State instead of the value."""

        @flow
        def f() -> int:
            return 5

        state = f(return_state=True)
        assert isinstance(state, State)
        assert state.is_completed() and state.result() == 5

    def test_body_exception_is_raised_and_failed(self) -> None:
        """A body that raises makes the flow FAILED; calling it raises that exception."""

        @flow
        def f() -> None:
            raise KeyError("body")

        with pytest.raises(KeyError):
            f()
        state = f(return_state=True)
        assert state.is_failed() and "KeyError" in state.message

    def test_unchecked_failed_runs_fail_the_flow(self) -> None:
        """Failed runs the body never checked fail the flow, and the message names them."""

        @flow
        def f() -> int:
            shared.fail.submit("a")
            shared.fail.submit("b")
            shared.add.submit(1, 1)
            return 1

        state = f(return_state=True)
        assert state.is_failed()
        assert "2 task run(s)" in state.message
        assert "fail-1" in state.message and "fail-2" in state.message
        with pytest.raises(shared.ConformanceError):
            f()

    def test_checked_failed_runs_do_not_fail_the_flow(self) -> None:
        """A failed run whose state the body looked at does not fail the flow."""

        @flow
        def f() -> str:
            return shared.fail.submit("seen").wait().name  # type: ignore[union-attr]

        assert f() == "Failed"

    def test_flow_waits_for_every_submitted_run(self) -> None:
        """A flow returns only after every run it submitted is final."""
        futures: list[Any] = []

        @flow(runner=ConcurrentRunner(max_workers=2))
        def f() -> None:
            futures.append(slow_value.submit(1))
            threading.Timer(0.2, release.set).start()

        f()
        assert futures[0].done() and futures[0].state.is_completed()

    def test_body_error_cancels_pending_runs(self) -> None:
        """When the body raises, its runs that are not final end CANCELLED, not orphaned."""
        futures: list[Any] = []

        @flow(runner=ConcurrentRunner(max_workers=1))
        def f() -> None:
            futures.extend(slow_value.map([1, 2]))
            raise RuntimeError("stop")

        with pytest.raises(RuntimeError):
            f()
        assert all(fut.done() for fut in futures)
        assert futures[1].state.is_cancelled()

    def test_hooks_see_the_flow_run(self) -> None:
        """Observer hooks fire for the flow run and every task-run change."""
        recorder = StateRecorder()
        with use_host(PluginHost(entry_points=False, extra_plugins=[("rec", recorder)])):

            @flow(runner="sequential")
            def f() -> int:
                return shared.add.submit(1, 2).result()

            assert f() == 3
        assert [event for _, event in recorder.flows] == ["started", "Completed"]
        assert [(old, new) for _, old, new in recorder.changes] == [
            ("Pending", "Running"),
            ("Running", "Completed"),
        ]


class TestRunnerChoice:
    def test_with_options_runner_overrides_the_decorator(self) -> None:
        """with_options(runner=...) picks the runner for that call."""
        seen: list[str] = []

        @flow(runner="concurrent")
        def f() -> None:
            from conveyor import current_flow_run

            run = current_flow_run()
            assert run is not None
            seen.append(run.runner.name)

        f()
        f.with_options(runner="sequential")()
        f.with_options(runner=SequentialRunner())()
        assert seen == ["concurrent", "sequential", "sequential"]

    def test_bad_runner_value_is_refused(self) -> None:
        """A runner that is neither a name nor a Runner is refused at definition."""
        with pytest.raises(ConfigError, match="give a runner name"):
            flow(runner=3)(lambda: None)  # type: ignore[call-overload]

    def test_runner_object_is_not_started_in_place(self) -> None:
        """A flow starts its own copy; the configured runner object stays unstarted."""
        runner = ConcurrentRunner(max_workers=2)

        @flow(runner=runner)
        def f() -> int:
            return 1

        f()
        assert not runner.started

    def test_cleanup_error_does_not_hide_the_body_error(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """If the body raised and the runner then fails to stop, the body's error is raised."""

        @attrs.define(kw_only=True)
        class BadStop(SequentialRunner):
            def on_stop(self) -> None:
                raise OSError("cannot stop")

        @flow(runner=BadStop())
        def f() -> None:
            raise ValueError("the real problem")

        with (
            caplog.at_level(logging.ERROR, logger="conveyor"),
            pytest.raises(ValueError, match="real problem"),
        ):
            f()
        assert "Stopping runner" in caplog.text

    def test_runner_that_fails_to_start_raises_before_the_body(self) -> None:
        """A runner that cannot start raises its error and the body never runs."""
        ran: list[int] = []

        @attrs.define(kw_only=True)
        class NoStart(Runner):
            name = "nostart"

            def on_start(self) -> None:
                raise ConnectionError("no backend")

        @flow(runner=NoStart())
        def f() -> None:
            ran.append(1)

        with pytest.raises(ConnectionError):
            f()
        assert ran == []


class TestAsyncAndNested:
    def test_async_flow_with_sync_and_async_tasks(self) -> None:
        """An async flow awaits async tasks inline, and awaits submitted futures."""

        @flow
        async def f() -> int:
            a = await shared.async_add(1, 2)
            b = await shared.async_add.submit(a, 10)
            c = shared.add.submit(b, 100)
            return await c

        assert asyncio.run(f()) == 113

    def test_flow_inside_a_flow(self) -> None:
        """A flow called inside a flow runs as a nested flow run with its own runner."""

        @flow(runner="sequential")
        def inner(x: int) -> int:
            return shared.add.submit(x, 1).result()

        @flow(runner="concurrent")
        def outer() -> list[int]:
            return [inner(i) for i in range(3)]

        assert outer() == [1, 2, 3]

    def test_flow_called_from_a_task(self) -> None:
        """A task may call a flow; the nested flow run completes."""

        @flow(runner="sequential")
        def inner(x: int) -> int:
            return shared.add.submit(x, 1).result()

        @task
        def calls_flow(x: int) -> int:
            return inner(x)

        @flow(runner=ConcurrentRunner(max_workers=1))
        def outer() -> list[int]:
            return [fut.result() for fut in calls_flow.map([1, 2])]

        assert outer() == [2, 3]


class TestSecondInterrupt:
    @pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
    def test_interrupt_before_the_stop_began_still_stops_the_runner(self, is_async: bool) -> None:
        """A second Ctrl-C landing just before the flow's runner stop began still stops the
        runner (its cluster), then propagates: for sync and async flows alike."""
        stops: list[str] = []
        interrupted: list[bool] = []

        @attrs.define(kw_only=True, eq=False)
        class InterruptedOnce(SequentialRunner):
            def stop(self) -> None:
                if not interrupted:
                    interrupted.append(True)
                    raise KeyboardInterrupt  # as if it landed before stop() ran a line
                super().stop()

            def on_stop(self) -> None:
                stops.append("stopped")
                super().on_stop()

        @flow(runner=InterruptedOnce())
        def body() -> int:
            return 1

        @flow(runner=InterruptedOnce())
        async def async_body() -> int:
            return 1

        with pytest.raises(KeyboardInterrupt):
            if is_async:
                anyio.run(async_body)
            else:
                body()
        assert interrupted
        assert stops == ["stopped"]

    def test_interrupt_as_on_stop_is_entered_still_stops_the_runner(self) -> None:
        """A Ctrl-C landing as the runner's on_stop is entered (before it ran a line) still
        stops the runner, then propagates."""
        import sys

        @attrs.define(kw_only=True, eq=False)
        class Counting(SequentialRunner):
            stops: int = attrs.field(default=0, init=False)

            def on_stop(self) -> None:
                self.stops += 1
                super().on_stop()

        runner = Counting().start()
        fired: list[bool] = []

        def tracer(frame: Any, event: str, _arg: Any) -> Any:
            if event == "call" and frame.f_code is Counting.on_stop.__code__ and not fired:
                fired.append(True)
                raise KeyboardInterrupt  # as a signal checked at the function's entry would
            return None

        sys.settrace(tracer)
        try:
            with pytest.raises(KeyboardInterrupt):
                runner.stop()
        finally:
            sys.settrace(None)
        assert fired
        assert runner.stops == 1
        assert not runner.started


class TestNestedFlows:
    def test_a_nested_flow_on_the_same_runner_shares_the_started_runner(self) -> None:
        """A flow called from a flow body, resolving to the same runner configuration, uses
        the outer run's started runner instead of starting another, and leaves it running."""
        from conveyor import current_flow_run

        seen: list[object] = []

        @flow(runner="concurrent")
        def inner() -> int:
            run = current_flow_run()
            assert run is not None
            seen.append(run.runner)
            return add_one_task.submit(1).result()

        @flow(runner="concurrent")
        def outer() -> tuple[int, bool]:
            run = current_flow_run()
            assert run is not None
            seen.append(run.runner)
            value = inner()
            return value, run.runner.started

        assert outer() == (2, True)
        assert seen[0] is seen[1]

    def test_a_nested_flow_on_another_configuration_starts_its_own(self) -> None:
        """A nested flow whose runner differs (another name or options) starts its own."""
        from conveyor import current_flow_run
        from conveyor.runners import ConcurrentRunner

        seen: list[object] = []

        @flow(runner=ConcurrentRunner(max_workers=2))
        def inner() -> None:
            run = current_flow_run()
            assert run is not None
            seen.append(run.runner)

        @flow(runner="concurrent")
        def outer() -> None:
            run = current_flow_run()
            assert run is not None
            seen.append(run.runner)
            inner()

        outer()
        assert seen[0] is not seen[1]


@task
def add_one_task(x: int) -> int:
    return x + 1
