"""The Ray runner on a real cluster: results, native object refs, async, logs, resources, nesting."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_ray")

from conveyor import State, StateType, flow
from conveyor_ray import RayResult, RayRunner
from tests.ray import _tasks as rt

BOUND = 60.0


class TestResults:
    def test_values_and_chains(self, runner: RayRunner) -> None:
        """Submitted runs and chains of futures complete with the right values."""

        @flow(runner=runner)
        def chain() -> tuple[int, list[int]]:
            a = rt.add.submit(1, 2)
            b = rt.add.submit(a, 10)
            many = rt.add.map([1, 2], [b, b])
            return b.result(timeout=BOUND), [f.result(timeout=BOUND) for f in many]

        assert chain() == (13, [14, 15])

    def test_tasks_run_on_ray_workers(self, runner: RayRunner) -> None:
        """Sync and async task bodies execute in Ray worker processes, not in the driver."""

        @flow(runner=runner)
        def where() -> tuple[int, tuple[int, int]]:
            return rt.pid.submit().result(timeout=BOUND), rt.async_pid.submit(21).result(
                timeout=BOUND
            )

        sync_pid, (doubled, async_pid) = where()
        assert doubled == 42
        assert sync_pid != os.getpid()
        assert async_pid != os.getpid()

    def test_completed_state_holds_an_object_ref(self, runner: RayRunner) -> None:
        """A completed run's data is a RayResult around an ObjectRef, fetched on demand; a
        small scalar travels inline with the outcome instead."""
        import ray

        @flow(runner=runner)
        def one() -> tuple[Any, int]:
            state = rt.pair.submit(2, 3).wait(BOUND)
            small = rt.add.submit(2, 3).wait(BOUND)
            assert state is not None and small is not None
            assert small.data == 5
            return state.data, state.result()

        data, value = one()
        assert isinstance(data, RayResult)
        assert isinstance(data.object_ref, ray.ObjectRef)
        assert value == [2, 3]


class TestNativeRefs:
    def test_driver_never_unpickles_intermediate_results(
        self, runner: RayRunner, tmp_path: Path
    ) -> None:
        """A value passed from task to task as a future is never unpickled by the driver."""
        path = str(tmp_path / "unpicklers")

        @flow(runner=runner)
        def pipeline() -> int:
            t0 = rt.make_tracer.submit(path)
            t1 = rt.pass_tracer.submit(t0)
            t2 = rt.pass_tracer.submit(t1)
            return rt.tracer_size.submit(t2).result(timeout=BOUND)

        assert pipeline() == 10
        pids = rt.unpicklers(path)
        assert pids, "the workers should have unpickled the tracer"
        assert os.getpid() not in pids

    def test_numpy_chain_stays_in_object_store(self, runner: RayRunner) -> None:
        """A chain passing a NumPy array ends right; only the asked-for value reaches the driver."""
        np = pytest.importorskip("numpy")

        @flow(runner=runner)
        def chain() -> float:
            f = rt.inc_array.submit(np.zeros(1000))
            for _ in range(5):
                f = rt.inc_array.submit(f)
            return float(f.result(timeout=BOUND).sum())

        assert chain() == 6000.0

    def test_numpy_argument_travels_as_a_ray_argument(self, runner: RayRunner) -> None:
        """
        An array of numbers goes to Ray as it is: stored once and handed to the worker without a
        copy, so it arrives read-only (as Ray gives stored arrays). One of objects is packed.
        """
        np = pytest.importorskip("numpy")

        @flow(runner=runner)
        def arrays() -> list[tuple[float, bool]]:
            big = np.arange(200_000, dtype=np.float64)  # 1.6 MB: Ray keeps it in its store
            objects = np.array([1, "a", None], dtype=object)
            futures = [rt.array_info.submit(big), rt.array_info.submit(a=objects)]
            return [f.result(timeout=BOUND) for f in futures]

        (total, writeable), (length, packed_writeable) = arrays()
        assert total == float(np.arange(200_000, dtype=np.float64).sum())
        assert writeable is False  # zero-copy from the object store
        assert length == 3.0
        assert packed_writeable is True  # unpickled by conveyor on the worker: a copy


class TestLogs:
    def test_worker_logs_reach_the_driver_with_run_names(
        self, runner: RayRunner, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Records a task logs on a Ray worker are handled by the driver's loggers, with names."""
        caplog.set_level(logging.INFO)

        @flow(runner=runner)
        def logging_flow() -> int:
            return rt.log_something.submit("hello").result(timeout=BOUND)

        worker_pid = logging_flow()
        records = [r for r in caplog.records if "hello" in r.getMessage()]
        by_logger = {r.name: r for r in records}
        assert set(by_logger) >= {"conveyor.runs", "user.module"}
        for record in by_logger.values():
            assert record.task_run_name == "log_something-1"
            assert record.flow_run_name.startswith("logging_flow-")
            assert record.process == worker_pid != os.getpid()


class TestResources:
    def test_resources_become_ray_options(self, runner: RayRunner) -> None:
        """CPU, memory and custom resources of a task are what Ray assigns to it."""
        heavy = rt.assigned.with_options(resources={"CPU": 2, "special": 1})
        light = rt.assigned.with_options(resources={"CPU": 0.5, "memory": 50_000_000})

        @flow(runner=runner)
        def asking() -> tuple[dict[str, float], dict[str, float]]:
            return heavy.submit().result(timeout=BOUND), light.submit().result(timeout=BOUND)

        got_heavy, got_light = asking()
        assert got_heavy["CPU"] == 2 and got_heavy["special"] == 1
        assert got_light["CPU"] == 0.5
        assert got_light.get("memory") == 50_000_000

    @pytest.mark.parametrize(
        "resources", [{"GPU": 1}, {"special": 5}, {"no-such-label": 1}, {"CPU": 64}]
    )
    def test_unsatisfiable_request_is_a_clear_crash(
        self, runner: RayRunner, resources: dict[str, float]
    ) -> None:
        """A request no node can meet ends CRASHED(resources-unavailable) at once, with a
        message naming it."""
        task = rt.add.with_options(resources=resources)

        @flow(runner=runner)
        def asking() -> State[Any]:
            state = task.submit(1, 2).wait(BOUND)
            assert state is not None
            return state

        started = time.monotonic()
        state = asking()
        assert time.monotonic() - started < 20
        assert state.type is StateType.CRASHED
        assert state.reason == "resources-unavailable"
        key = next(iter(resources))
        assert key in state.message and "no node" in state.message

    def test_remote_options_apply_to_every_task(self, ray_address: str) -> None:
        """`remote_options` are the default Ray options of each task."""
        runner = RayRunner(address=ray_address, remote_options={"resources": {"special": 1}})

        @flow(runner=runner)
        def asking() -> dict[str, float]:
            return rt.assigned.submit().result(timeout=BOUND)

        assert asking()["special"] == 1


class TestNested:
    def test_nested_flows_on_full_cluster(self, runner: RayRunner) -> None:
        """Four outer tasks on two CPUs each run a whole Ray flow inside, without deadlock."""

        @flow(runner=runner)
        def outer() -> list[int]:
            return [f.result(timeout=BOUND) for f in rt.nested_outer.map(range(4))]

        assert outer() == [2, 3, 4, 5]
