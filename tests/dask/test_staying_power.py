"""Issue 6 on Dask: interrupts leave nothing behind, scale, and a 50-flow soak by address."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_dask")

import conveyor
from conveyor import flow
from conveyor_dask import DaskRunner
from tests._staying_power import (
    check_group_interrupt,
    check_map_scale,
    check_program_interrupt,
    check_program_second_interrupt,
    check_second_interrupt_stops_everything,
    check_signal_stops_everything,
    payload,
    soak,
)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_everything(tmp_path: Path, sig: int, code: int) -> None:
    """A signal mid-flow on a LocalCluster: exit 128+signal within 15 s, every process it started gone."""
    check_signal_stops_everything(tmp_path, "dask", sig, code)


def test_second_sigint_during_shutdown(tmp_path: Path) -> None:
    """
    A second SIGINT to `conveyor run` once its shutdown began (runs cancelled, the runner
    stopping): exit 130 at once, and every process of the runner-owned LocalCluster (nannies,
    workers) gone.
    """
    check_second_interrupt_stops_everything(tmp_path, "dask")


def test_sigint_to_a_program(tmp_path: Path) -> None:
    """
    `python prog.py` calling a flow on a runner-owned LocalCluster gets SIGINT mid-flow: the
    KeyboardInterrupt propagates within 15 s, its 4 runs are Cancelled, every process is gone.
    """
    check_program_interrupt(tmp_path, "dask", in_flight=4)


def test_second_sigint_to_a_program(tmp_path: Path) -> None:
    """
    `python prog.py` calling a flow on a runner-owned LocalCluster gets a second SIGINT while the flow
    shuts down after the first: it dies of it at once, and every process it started is gone.
    """
    check_program_second_interrupt(tmp_path, "dask")


def test_map_20k(cluster: Any) -> None:
    """
    A .map over 20,000 items on Dask: every run final, every result right, and the driver's
    peak memory grows by less than 2 KB per run.
    """
    check_map_scale(DaskRunner(address=cluster.scheduler_address))


def test_soak_50_flows_by_address(cluster: Any) -> None:
    """50 flows against one long-lived cluster leave no task on the scheduler and no growth."""
    from distributed import Client

    runner = DaskRunner(address=cluster.scheduler_address)

    @flow(runner=runner)
    def one(k: int) -> int:
        return sum(len(b) for b in conveyor.gather(payload.map(range(20))))

    with Client(cluster.scheduler_address) as watcher:

        def no_tasks_left() -> bool:
            return watcher.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0

        soak(one, 20 * 4097, no_tasks_left)


@pytest.mark.timeout(600)
def test_ctrl_c_to_the_process_group(tmp_path: Path) -> None:
    """Ctrl-C to the whole process group of `conveyor run --runner dask`, 10 times: exit 130 within 15 s, nothing left."""
    check_group_interrupt(tmp_path, "dask", tries=10)
