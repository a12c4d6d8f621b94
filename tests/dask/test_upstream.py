"""
The upstream contract: every ``distributed`` internal listed in ``conveyor_dask._internals`` is
still there, with the shape the plugin uses, on the driver, the workers, the scheduler and a
cluster; a failure names the internal. And the start announcement each run makes stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("conveyor_dask")

from conveyor import flow, task
from conveyor_dask import DaskRunner, _internals

#: Sequential runs timed by the announcement test, and their bound: they take well under a
#: second here, even on a loaded machine; a second more per run would take them past it.
SHORT_RUNS = 40
SHORT_RUNS_LIMIT = 20.0


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    """A plain Dask client of the module's cluster."""
    from distributed import Client

    with Client(cluster, set_as_default=False) as c:
        yield c


def _gone(where: str, names: list[str]) -> str:
    return (
        f"distributed internals the plugin uses are gone or changed on the {where}: "
        f"{'; '.join(names)}. Update conveyor_dask._internals (and the pyproject.toml list)."
    )


class TestInternals:
    def test_every_internal_is_listed_with_a_version_and_a_reason(self) -> None:
        """Each listed internal has a unique name, a side, the version checked and why it is used."""
        names = [i.name for i in _internals.INTERNALS]
        assert len(names) == len(set(names))
        for internal in _internals.INTERNALS:
            assert internal.side in {"driver", "worker", "scheduler", "cluster"}, internal
            assert internal.checked and internal.why.strip(), internal

    def test_driver_side(self) -> None:
        """The classes, config and methods the driver relies on are there."""
        gone = _internals.missing("driver")
        assert not gone, _gone("driver", gone)

    def test_worker_side(self, client: Any) -> None:
        """Every worker has the batched stream fields and event loop the start announcement uses."""
        answers = client.run(_internals.missing_on_worker)
        assert answers, "no worker answered"
        for address, gone in answers.items():
            assert not gone, _gone(f"worker {address}", gone)

    def test_scheduler_side(self, client: Any) -> None:
        """The scheduler has the plugin table and task states the lost-result guard uses."""
        gone = client.run_on_scheduler(_internals.missing_on_scheduler)
        assert not gone, _gone("scheduler", gone)

    def test_cluster_side(self, cluster: Any) -> None:
        """A LocalProcessCluster has the SpecCluster fields its overrides read and change."""
        gone = _internals.missing("cluster", cluster)
        assert not gone, _gone("cluster", gone)


def _announce(key: str) -> tuple[bool, float]:
    """On a worker: announce a start as run_task does; whether its write was seen, and when."""
    from distributed import get_worker

    from conveyor_dask._worker import _announce_start

    t0 = time.monotonic()
    seen = _announce_start(get_worker(), "conveyor-upstream-test", key)
    return seen, time.monotonic() - t0


@task
def add_one(x: int) -> int:
    return x + 1


class TestStartAnnouncement:
    def test_the_announcement_sees_its_write(self, client: Any) -> None:
        """The worker's stream logs the announced batch once written, well before the wait's limit."""
        from conveyor_dask._worker import FLUSH_LIMIT

        for i in range(5):
            seen, elapsed = client.submit(_announce, f"probe-{i}", pure=False).result(timeout=60)
            assert seen, (
                "the start announcement never saw its batch written: "
                "Worker.batched_stream.recent_message_log (distributed.batched.BatchedSend) no "
                "longer logs written batches as lists of the messages sent; every run now "
                f"waits {FLUSH_LIMIT} s before its body starts"
            )
            assert elapsed < FLUSH_LIMIT

    def test_many_short_runs_stay_fast(self, cluster: Any) -> None:
        """
        40 runs one after the other finish within 20 s: a generous bound for runs of a few
        milliseconds, which a second more per run (an announcement that waits out its limit)
        would exceed.
        """

        @flow(runner=DaskRunner(address=cluster.scheduler_address))
        def chain() -> tuple[int, float]:
            add_one.submit(0).result(timeout=60)  # warm up the workers' caches
            t0 = time.monotonic()
            x = 0
            for _ in range(SHORT_RUNS):
                x = add_one.submit(x).result(timeout=60)
            return x, time.monotonic() - t0

        value, elapsed = chain()
        assert value == SHORT_RUNS
        assert elapsed < SHORT_RUNS_LIMIT, (
            f"{SHORT_RUNS} short runs took {elapsed:.1f} s; the start announcement "
            "(conveyor_dask._worker._announce_start, through Worker.batched_stream) got slow"
        )
