"""Issue 6 on Ray: interrupts leave nothing behind, scale, and a 50-flow soak on one cluster."""

from __future__ import annotations

import gc
import signal
from pathlib import Path

import pytest

pytest.importorskip("conveyor_ray")

import conveyor
from conveyor import flow
from conveyor_ray import RayRunner
from tests._staying_power import (
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
    """A signal mid-flow on a local Ray: exit 128+signal within 15 s, every process it started gone."""
    check_signal_stops_everything(tmp_path, "ray", sig, code)


def test_second_sigint_during_shutdown(tmp_path: Path) -> None:
    """
    A second SIGINT to `conveyor run` once its shutdown began (runs cancelled, the runner
    stopping): exit 130 at once, and every process of the runner-owned local Ray (GCS, raylet,
    workers) gone.
    """
    check_second_interrupt_stops_everything(tmp_path, "ray")


def test_sigint_to_a_program(tmp_path: Path) -> None:
    """
    `python prog.py` calling a flow on a runner-owned local Ray gets SIGINT mid-flow: the
    KeyboardInterrupt propagates within 15 s, its 4 runs are Cancelled, every process is gone.
    """
    check_program_interrupt(tmp_path, "ray", in_flight=4)


def test_second_sigint_to_a_program(tmp_path: Path) -> None:
    """
    `python prog.py` calling a flow on a runner-owned local Ray gets a second SIGINT while the flow
    shuts down after the first: it dies of it at once, and every process it started is gone.
    """
    check_program_second_interrupt(tmp_path, "ray")


def test_map_20k(runner: RayRunner) -> None:
    """
    A .map over 20,000 items on Ray: every run final, every result right, and the driver's
    peak memory grows by less than 2 KB per run.
    """
    check_map_scale(runner)


def test_soak_50_flows(runner: RayRunner) -> None:
    """50 flows on one Ray cluster pin no object of a finished flow and do not grow."""
    import ray

    def owned() -> int:
        counts = ray._private.worker.global_worker.core_worker.get_all_reference_counts()
        return len(counts)

    @flow(runner=runner)
    def one(k: int) -> int:
        return sum(len(b) for b in conveyor.gather(payload.map(range(20))))

    gc.collect()
    baseline = owned()
    soak(one, 20 * 4097, lambda: owned() <= baseline)
