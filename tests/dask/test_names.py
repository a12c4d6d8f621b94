"""What the Dask side shows of a run: its task's name in the key, and its worker in the run record."""

from __future__ import annotations

from typing import Any

from conveyor import flow, task
from conveyor_dask import DaskRunner


@task
def crunch(x: int) -> tuple[str, str]:
    from distributed import get_worker

    worker = get_worker()
    return str(worker.get_current_task()), str(worker.address)


@task(name="load-data")
def load_data() -> str:
    from distributed import get_worker

    return str(get_worker().get_current_task())


def test_dask_keys_are_named_after_the_task(cluster: Any) -> None:
    """`dask.utils.key_split` of a run's Dask key (the dashboard's task stream) is the task's name."""
    from dask.utils import key_split

    @flow(runner=DaskRunner(address=cluster.scheduler_address))
    def f() -> tuple[list[str], str]:
        keys = [k for k, _ in (x.result(timeout=60) for x in crunch.map(range(3)))]
        return keys, load_data.submit().result(timeout=60)

    keys, dashed = f()
    assert len(set(keys)) == 3, keys  # a key of its own per run
    assert {key_split(k) for k in keys} == {"crunch"}, keys
    assert key_split(dashed) == "load-data", dashed


def test_the_run_record_names_the_worker(cluster: Any) -> None:
    """With record_runs, each attempt's `where` is the Dask worker that ran it."""
    runner = DaskRunner(address=cluster.scheduler_address)

    @flow(runner=runner, record_runs=True)
    def recorded() -> list[str]:
        return [address for _, address in (x.result(timeout=60) for x in crunch.map(range(4)))]

    run = recorded.create_run()
    addresses = run.run().result()
    runs = sorted(run.record.iter_task_runs(), key=lambda r: r.name)
    assert [r.name for r in runs] == [f"crunch-{i}" for i in range(1, 5)]
    wheres = [r.attempts[-1].where for r in runs]
    assert wheres == [f"dask worker {a}" for a in addresses], (wheres, addresses)


def test_without_the_record_no_place_is_noted(cluster: Any) -> None:
    """Without record_runs the runner names no place: the run still becomes Running, and `where` stays unset."""
    seen: list[Any] = []

    class Spy(DaskRunner):
        def execute(self, attempt: Any) -> None:
            seen.append(attempt)
            super().execute(attempt)

    @flow(runner=Spy(address=cluster.scheduler_address))
    def plain() -> str:
        return crunch.submit(1).result(timeout=60)[1]

    assert plain().startswith("tcp://")
    assert len(seen) == 1 and not seen[0].wants_where and seen[0].where is None


@task
def number(x: int) -> Any:
    return x if x >= 0 else complex(x, 1)


def test_small_values_come_with_the_end_of_their_run(cluster: Any) -> None:
    """An int, float or bool result reaches the driver with the run's end: no Dask future is kept for it."""
    from conveyor_dask._results import DaskResult

    @flow(runner=DaskRunner(address=cluster.scheduler_address))
    def f() -> tuple[list[Any], list[int]]:
        futures = number.map(range(20))
        states = [x.wait(60) for x in futures]
        return [s.data if s is not None else None for s in states], [x.result() for x in futures]

    data, values = f()
    assert values == list(range(20))
    # The event carrying a value precedes the run's end on the scheduler's streams; a value
    # that came late is fetched on demand instead, so allow a few of those.
    assert sum(isinstance(d, DaskResult) for d in data) <= 2, data
    assert all(isinstance(d, (int, DaskResult)) for d in data)


def test_the_first_small_result_fetches_the_others_with_it(cluster: Any) -> None:
    """Small results left on the cluster (complex numbers) are fetched together by the first result()."""
    from conveyor_dask._results import DaskResult

    @flow(runner=DaskRunner(address=cluster.scheduler_address))
    def f() -> tuple[list[complex], list[bool]]:
        futures = number.map(range(-1, -11, -1))
        refs = []
        for x in futures:
            state = x.wait(60)
            assert state is not None and isinstance(state.data, DaskResult)
            refs.append(state.data)
        first = futures[0].result()
        fetched = [r.fetched for r in refs]
        return [first] + [x.result() for x in futures[1:]], fetched

    values, fetched = f()
    assert values == [complex(-i, 1) for i in range(1, 11)]
    assert all(fetched), fetched
