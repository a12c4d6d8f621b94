"""Running flows on a shared LocalCluster: values, native futures, async, logs, bad data."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_dask")

from conveyor import StateType, current_flow_run, flow, get_run_logger, task
from conveyor.run_logging import install_record_factory
from conveyor.testing import wait_until
from conveyor_dask import DaskResult, DaskRunner
from tests.dask._support import count_runs


@pytest.fixture
def runner(cluster: Any) -> DaskRunner:
    return DaskRunner(address=cluster.scheduler_address, connect_timeout=10)


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def worker_pid() -> int:
    import os

    return os.getpid()


@task
async def add_async(x: int) -> int:
    import asyncio
    import os

    await asyncio.sleep(0.01)
    return x + os.getpid() * 0  # proves it ran; the pid check is below


@task
async def async_pid() -> int:
    import os

    return os.getpid()


class TestValues:
    def test_submit_map_and_dependencies(self, runner: DaskRunner) -> None:
        """Futures passed to tasks are dependencies; values come back right."""

        @flow(runner=runner)
        def f() -> list[int]:
            a = add.submit(1, 2)
            b = add.submit(a, 10)
            return [b.result(), *[x.result() for x in add.map([1, 2, 3], [b, b, b])]]

        assert f() == [13, 14, 15, 16]

    def test_async_tasks_run_on_the_workers(self, runner: DaskRunner) -> None:
        """Async tasks run in the worker processes, not the driver."""

        @flow(runner=runner)
        def f() -> tuple[int, int]:
            return add_async.submit(41).result(), async_pid.submit().result()

        value, pid = f()
        assert value == 41
        assert pid != os.getpid()

    def test_completed_state_holds_a_dask_result(self, runner: DaskRunner) -> None:
        """A completed run's data is a DaskResult, fetched only on result()."""

        @flow(runner=runner)
        def f() -> tuple[bool, Any, bool]:
            fut = pid_text.submit()
            state = fut.wait(30)
            assert state is not None and state.is_completed()
            ref = state.data
            before = isinstance(ref, DaskResult) and not ref.fetched
            return before, fut.result(), ref.fetched

        before, text, after = f()
        assert before and after
        assert text != f"pid {os.getpid()}" and text.startswith("pid ")

    def test_none_holds_nothing_on_the_cluster(self, runner: DaskRunner) -> None:
        """A run that returned None is COMPLETED with None, and its Dask key is released."""

        @flow(runner=runner)
        def f() -> tuple[list[Any], int]:
            futures = [echo.submit(None) for _ in range(5)]
            states = [fu.wait(30) for fu in futures]
            assert all(s is not None and s.is_completed() for s in states), states
            client = current_flow_run().runner.client  # type: ignore[union-attr]
            wait_until(lambda: not client.futures, 30, what="the client to release every key")
            return [s.data for s in states], len(client.futures)

        data, held = f()
        assert data == [None] * 5 and held == 0

    def test_small_results_beyond_the_cap_are_fetched(
        self, runner: DaskRunner, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        Small numbers not sent with their run's end (complex ones; ints, floats and bools are)
        stay on the cluster up to SMALL_HELD runs; beyond that the oldest are fetched in
        batches and their Dask futures released, so the driver holds values, not one Dask
        future per run.
        """
        from conveyor_dask import _prefetch

        monkeypatch.setattr(_prefetch, "SMALL_HELD", 8)
        values = [complex(i, 1) for i in range(20)]

        @flow(runner=runner)
        def f() -> tuple[list[Any], list[Any], int]:
            futures = [echo.submit(v) for v in values]
            refs = [fu.wait(30).data for fu in futures]  # type: ignore[union-attr]
            client = current_flow_run().runner.client  # type: ignore[union-attr]
            wait_until(
                lambda: len(client.futures) <= 8, 30, what="the oldest small results fetched"
            )
            fetched, held = [r.fetched for r in refs], len(client.futures)
            return fetched, [fu.result() for fu in futures], held

        fetched, results, held = f()
        assert results == values
        assert held == 8
        assert sum(fetched) == 12  # the 12 that finished first, in three batches of 4


@task
def pid_text() -> str:
    import os

    return f"pid {os.getpid()}"


@task
def echo(value: Any) -> Any:
    return value


@task
def make_tracked(n: int) -> Any:
    from tests.dask._support import Tracked

    return Tracked(b"x" * n)


@task
def grow(t: Any) -> Any:
    from tests.dask._support import Tracked

    return Tracked(t.payload + b"y")


@task
def size_of(t: Any) -> int:
    return len(t.payload)


class TestNativeFutures:
    def test_driver_never_unpickles_intermediates(self, runner: DaskRunner) -> None:
        """Values passed between tasks move worker to worker; the driver unpickles only what it asks for."""
        from tests.dask._support import UNPICKLED_IN

        UNPICKLED_IN.clear()

        @flow(runner=runner)
        def f() -> int:
            t = make_tracked.submit(1000)
            for _ in range(5):
                t = grow.submit(t)
            return size_of.submit(t).result()

        assert f() == 1005
        assert UNPICKLED_IN == []

        @flow(runner=runner)
        def g() -> int:
            return len(make_tracked.submit(10).result().payload)

        assert g() == 10
        assert [os.getpid()] == UNPICKLED_IN

    def test_a_chain_releases_the_values_it_no_longer_refers_to(
        self, runner: DaskRunner, cluster: Any
    ) -> None:
        """
        A chain of 20 runs whose earlier futures the flow dropped keeps only its last values on
        the workers, released as soon as nothing refers to them (without the garbage collector).
        """
        import gc

        from dask.utils import key_split
        from distributed import Client

        def held(client: Any) -> int:
            keys = client.run(lambda dask_worker: [str(k) for k in dask_worker.data])
            return sum(key_split(k) == "grow" for ks in keys.values() for k in ks)

        @flow(runner=runner)
        def f() -> tuple[int, int]:
            t = make_tracked.submit(10)
            for _ in range(20):
                t = grow.submit(t)
            size = size_of.submit(t).result(timeout=60)
            with Client(cluster.scheduler_address, set_as_default=False) as c:
                wait_until(lambda: 1 <= held(c) <= 2, 30)
                return size, held(c)

        enabled = gc.isenabled()
        gc.disable()
        try:
            size, left = f()
        finally:
            if enabled:
                gc.enable()
        assert size == 30
        assert 1 <= left <= 2, f"{left} values of the chain are still held on the workers"


@task
def logs_something(n: int) -> int:
    get_run_logger().warning("hello from the worker %d", n)
    logging.getLogger("user.module").info("plain logger %d", n)
    return n


@task
def logs_then_fails() -> None:
    get_run_logger().error("about to fail")
    raise KeyError("nope")


class TestLogs:
    def test_worker_logs_reach_the_driver_with_run_names(
        self, runner: DaskRunner, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Records logged in tasks on workers are handled by the driver's loggers, with run names."""
        install_record_factory()
        caplog.set_level(logging.INFO)

        @flow(runner=runner, name="logflow")
        def f() -> None:
            logs_something.submit(7).result()
            logs_then_fails.submit().wait(30)

        f(return_state=True)
        mine = [r for r in caplog.records if getattr(r, "remote", False)]
        by_msg = {r.getMessage(): r for r in mine}
        assert "hello from the worker 7" in by_msg
        assert "plain logger 7" in by_msg
        assert "about to fail" in by_msg
        rec = by_msg["hello from the worker 7"]
        assert rec.flow_run_name.startswith("logflow-")
        assert rec.task_run_name == "logs_something-1"
        assert rec.process != os.getpid()


@task
def raises() -> None:
    raise ValueError("the message")


@task
def exits() -> None:
    import sys

    sys.exit(3)


@task
def returns_lock() -> Any:
    from tests.dask._support import make_lock

    return make_lock()


@task
def returns_generator() -> Any:
    return (c for c in "abc")


@task
def returns_bomb() -> Any:
    from tests.dask._support import UnpickleBomb

    return UnpickleBomb()


@task
def touch(folder: str, name: str, arg: Any = None) -> str:
    from tests.dask._support import record

    record(folder, name)
    return name


class TestFaults:
    def test_exception_is_failed_with_type_and_message(self, runner: DaskRunner) -> None:
        """A task that raises is FAILED with the original exception type and message."""

        @flow(runner=runner)
        def f() -> Any:
            return raises.submit().wait(30)

        state = f()
        assert state.type is StateType.FAILED
        exc = state.exception()
        assert type(exc) is ValueError and str(exc) == "the message"
        assert "in raises" in (state.traceback or "")

    def test_sys_exit_is_crashed_and_the_worker_survives(
        self, runner: DaskRunner, cluster: Any
    ) -> None:
        """sys.exit() in a task is CRASHED (system-exit); the worker processes are the same after."""
        from distributed import Client

        with Client(cluster, set_as_default=False) as c:
            before = set(c.run(os.getpid).values())

        @flow(runner=runner)
        def f() -> Any:
            states = [exits.submit().wait(30) for _ in range(2)]
            return states, [x.result() for x in add.map([1, 2, 3, 4], 1)]

        states, values = f()
        for state in states:
            assert state.type is StateType.CRASHED and state.reason == "system-exit"
        assert values == [2, 3, 4, 5]
        with Client(cluster, set_as_default=False) as c:
            assert set(c.run(os.getpid).values()) == before

    def test_unpicklable_argument(self, runner: DaskRunner, runs_dir: Path) -> None:
        """An argument that cannot be pickled: submit does not raise, CRASHED naming the type, body never runs."""
        import threading

        @flow(runner=runner)
        def f() -> Any:
            fut = touch.submit(str(runs_dir), "lock-arg", threading.Lock())
            return fut.wait(30)

        state = f(return_state=True).result(raise_on_failure=False)
        assert state.type is StateType.CRASHED
        assert state.reason == "argument-serialization"
        assert "lock" in state.message
        assert count_runs(runs_dir, "lock-arg") == 0

    @pytest.mark.parametrize(
        ("body", "reason", "needle"),
        [
            (returns_lock, "result-serialization", "lock"),
            (returns_generator, "result-serialization", "generator"),
            (returns_bomb, "result-deserialization", "UnpickleBomb"),
        ],
    )
    def test_bad_results_are_crashed(
        self, runner: DaskRunner, body: Any, reason: str, needle: str
    ) -> None:
        """A result that cannot be pickled or unpickled is CRASHED naming its type, never a user RuntimeError."""

        @flow(runner=runner)
        def f() -> Any:
            return body.submit().wait(30), add.submit(1, 1).result()

        state, other = f()
        assert state.type is StateType.CRASHED, state
        assert state.reason == reason
        assert needle in state.message
        assert other == 2


@task(resources={"GPU": 1})
def on_gpu() -> str:
    return "gpu"


class TestResources:
    def test_offered_resource_runs(self, runner: DaskRunner) -> None:
        """A task asking for a resource that workers offer runs."""

        @flow(runner=runner)
        def f() -> str:
            return on_gpu.submit().result(timeout=30)

        assert f() == "gpu"

    def test_missing_resource_is_crashed_at_once(self, runner: DaskRunner) -> None:
        """A resource no worker offers gives a clear CRASHED state, not a wait forever."""

        @flow(runner=runner)
        def f() -> Any:
            return on_gpu.with_options(resources={"TPU": 2}).submit().wait(15)

        state = f()
        assert state is not None, "the run waited instead of ending"
        assert state.type is StateType.CRASHED and state.reason == "resources-unavailable"
        assert "TPU" in state.message and "GPU=1" in state.message


@flow(runner="dask")
def inner_flow(x: int) -> int:
    return add.submit(x, 1).result(timeout=60)


@task
def runs_inner(x: int) -> tuple[int, int, bool]:
    import os

    from distributed import get_worker

    before = len(get_worker().scheduler.address)  # inside a worker
    return inner_flow(x), os.getpid(), before > 0


class TestNested:
    def test_nested_flows_reuse_the_worker_client_without_deadlock(
        self, runner: DaskRunner, cluster: Any
    ) -> None:
        """Four outer tasks on 2x1 worker threads each run a nested dask flow; all complete, no new cluster."""
        from distributed import Client

        @flow(runner=runner)
        def f() -> list[Any]:
            return [x.result(timeout=120) for x in runs_inner.map([1, 2, 3, 4])]

        t0 = time.monotonic()
        results = f()
        assert [r[0] for r in results] == [2, 3, 4, 5]
        assert time.monotonic() - t0 < 120
        with Client(cluster, set_as_default=False) as c:
            assert len(c.scheduler_info(n_workers=-1)["workers"]) == 2
