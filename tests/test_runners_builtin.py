"""The sequential and concurrent runners: ordering, bounded pools, async loop, timeouts."""

from __future__ import annotations

import logging
import pickle
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor import ConfigError, RunnerNotStartedError, flow, task
from conveyor.runners import ConcurrencyType, ConcurrentRunner, SequentialRunner
from conveyor.testing import _tasks as shared
from conveyor.testing import wait_until

release = threading.Event()


@pytest.fixture(autouse=True)
def _release() -> Any:
    release.clear()
    yield
    release.set()


@task
def stuck(*_: object) -> None:
    release.wait(30)


class TestSequential:
    def test_runs_each_submission_at_once_in_order(self) -> None:
        """Each submission is final when submit() returns, in submission order."""
        order: list[int] = []

        @task
        def record(i: int) -> int:
            order.append(i)
            return i

        @flow(runner="sequential")
        def f() -> list[bool]:
            futures = [record.submit(i) for i in range(5)]
            return [fut.done() for fut in futures]

        assert f() == [True] * 5
        assert order == [0, 1, 2, 3, 4]

    def test_runs_in_the_callers_thread(self) -> None:
        """Sync tasks without a timeout run in the submitting thread."""

        @task
        def where() -> int:
            return threading.get_ident()

        @flow(runner="sequential")
        def f() -> int:
            return where.submit().result()

        assert f() == threading.get_ident()

    def test_declares_sequential(self) -> None:
        """The runner declares its concurrency type."""
        assert SequentialRunner.concurrency is ConcurrencyType.SEQUENTIAL


class TestConcurrent:
    def test_max_workers_validation(self) -> None:
        """max_workers=0 is refused with a message naming the value and the fix."""
        with pytest.raises(ConfigError, match=r"`max_workers=0` is invalid; give a whole number"):
            ConcurrentRunner(max_workers=0)

    def test_configuration_pickles_and_compares(self) -> None:
        """A configured runner pickles and compares by its options."""
        runner = ConcurrentRunner(max_workers=3)
        assert pickle.loads(pickle.dumps(runner)) == runner
        assert runner != ConcurrentRunner(max_workers=4)
        assert runner.options() == {"max_workers": 3}

    def test_refuses_submit_before_start(self) -> None:
        """Submitting before start raises a clear error."""
        runner = ConcurrentRunner()
        with pytest.raises(RunnerNotStartedError, match="not started"):
            runner.submit(type("A", (), {"name": "x-1"})())  # type: ignore[arg-type]

    def test_double_start_is_refused_but_duplicates_are_independent(self) -> None:
        """A started runner cannot start again; its duplicate can."""
        runner = ConcurrentRunner(max_workers=1)
        with runner:
            with pytest.raises(RuntimeError, match="already started"):
                runner.start()
            with runner.duplicate() as other:
                assert other.started and other is not runner
        assert not runner.started

    def test_async_context_manager(self) -> None:
        """A runner starts and stops as an async context manager too."""

        async def main() -> bool:
            async with ConcurrentRunner(max_workers=1) as runner:
                return runner.started

        assert anyio.run(main)

    def test_pool_is_bounded(self) -> None:
        """No more than max_workers sync runs execute at once."""
        running = [0]
        peak = [0]
        lock = threading.Lock()

        @task
        def busy(i: int) -> int:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            release.wait(0.05)
            with lock:
                running[0] -= 1
            return i

        @flow(runner=ConcurrentRunner(max_workers=3))
        def f() -> list[int]:
            return [fut.result() for fut in busy.map(range(30))]

        assert f() == list(range(30))
        assert peak[0] <= 3

    def test_one_worker_finishes_a_dependency_chain(self) -> None:
        """max_workers=1 with a chain of dependent runs finishes: waiting holds no slot."""

        @flow(runner=ConcurrentRunner(max_workers=1))
        def f() -> int:
            fut = shared.add.submit(0, 1)
            for _ in range(50):
                fut = shared.add.submit(fut, 1)
            return fut.result(timeout=30)

        assert f() == 51

    def test_one_worker_task_waiting_on_another_task(self) -> None:
        """A task that submits and waits on another run gives its slot back while waiting."""

        @task
        def outer(x: int) -> int:
            return shared.add.submit(x, 1).result(timeout=30) * 10

        @flow(runner=ConcurrentRunner(max_workers=1))
        def f() -> list[int]:
            return [fut.result(timeout=30) for fut in outer.map([1, 2, 3, 4])]

        assert f() == [20, 30, 40, 50]

    def test_many_awaiting_async_tasks_share_one_thread(self) -> None:
        """Thousands of awaiting async tasks cost no extra threads."""
        peak = [0]

        @task
        async def nap(i: int) -> int:
            await anyio.sleep(0.2)
            peak[0] = max(peak[0], threading.active_count())
            return i

        @flow(runner=ConcurrentRunner(max_workers=2))
        def f() -> int:
            return sum(fut.result(timeout=60) for fut in nap.map(range(2000)))

        before = threading.active_count()
        assert f() == sum(range(2000))
        assert peak[0] <= before + 4

    def test_sync_timeout_is_on_time_and_warned_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A stuck sync run is TimedOut on time; a warning says it may still run, once."""
        limited = stuck.with_options(timeout_seconds=0.2)

        @flow(runner=ConcurrentRunner(max_workers=4))
        def f() -> list[Any]:
            return [fut.wait(10) for fut in limited.map(range(3))]

        with caplog.at_level(logging.WARNING, logger="conveyor"):
            states = f()
        assert [s.name for s in states] == ["TimedOut"] * 3
        assert all(s.reason == "not-stopped" for s in states)
        warnings = [r for r in caplog.records if "may still be running" in r.getMessage()]
        assert len(warnings) == 1

    def test_async_timeout_really_stops_the_coroutine(self, tmp_path: Path) -> None:
        """An async run past its timeout is cancelled on the loop: its work stops."""
        marker = tmp_path / "after"

        @task(timeout_seconds=0.2)
        async def sleepy() -> None:
            await anyio.sleep(2)
            marker.touch()

        @flow(runner="concurrent")
        def f() -> Any:
            return sleepy.submit().wait(10)

        state = f()
        assert state.name == "TimedOut" and state.reason == "stopped"
        assert not wait_until(marker.exists, 2.5)

    def test_cancel_queued_run_never_starts(self, tmp_path: Path) -> None:
        """A run still queued behind a busy pool is cancelled and never starts."""
        marker = str(tmp_path / "ran")

        @flow(runner=ConcurrentRunner(max_workers=1))
        def f() -> tuple[bool, str]:
            blocker = stuck.submit()
            queued = shared.count_runs.submit(marker)
            ok = queued.cancel()
            release.set()
            blocker.result(timeout=10)
            return ok, queued.state.name

        assert f() == (True, "Cancelled")
        assert not Path(marker).exists()

    def test_cancel_running_sync_run_is_honest(self) -> None:
        """Cancelling a running sync run marks it Cancelled and says it was not stopped."""
        started = threading.Event()

        @task
        def running() -> None:
            started.set()
            release.wait(30)

        @flow(runner="concurrent")
        def f() -> Any:
            fut = running.submit()
            assert started.wait(10)
            fut.cancel()
            return fut.state

        state = f()
        assert state.is_cancelled() and state.reason == "not-stopped"
        assert "may still be running" in state.message
