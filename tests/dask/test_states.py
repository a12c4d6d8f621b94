"""The states a run passes through on Dask, as observers and futures see them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_dask")

from conveyor import StateType, flow
from conveyor.plugins import PluginHost, use_host
from conveyor.testing import _tasks as shared
from conveyor.testing import wait_until
from conveyor_dask import DaskRunner
from tests import _hostile as h
from tests._support import StateRecorder


def test_a_run_becomes_running_when_its_body_starts(cluster: Any, tmp_path: Path) -> None:
    """A Dask run is Running while its body runs, and an observer sees Pending, Running, Completed."""
    recorder = StateRecorder()
    gate = str(tmp_path / "gate")
    runner = DaskRunner(address=cluster.scheduler_address, connect_timeout=10)
    with use_host(PluginHost(entry_points=False, extra_plugins=[("rec", recorder)])):

        @flow(runner=runner)
        def gated() -> tuple[bool, bool]:
            future = shared.wait_for_file.submit(gate, 60.0)
            running = wait_until(future.running, 30)
            Path(gate).touch()
            return running, future.result()

        assert gated() == (True, True)
    assert [(old, new) for _, old, new in recorder.changes] == [
        ("Pending", "Running"),
        ("Running", "Completed"),
    ]


def _plain_failure() -> None:
    raise ValueError("a plain Dask task's error")


def test_a_failed_run_logs_no_compute_failed_block(capfd: pytest.CaptureFixture[str]) -> None:
    """A FAILED conveyor run prints no "Compute Failed" block on its worker; a plain task's error still does."""
    import dask
    from distributed import Client

    from conveyor_dask.cluster import LocalProcessCluster
    from conveyor_dask.runner import OWNED_CLUSTER_CONFIG

    with dask.config.set(OWNED_CLUSTER_CONFIG):
        cluster = LocalProcessCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        )
    try:

        @flow(runner=DaskRunner(address=cluster.scheduler_address, connect_timeout=10))
        def failing() -> Any:
            state = h.raise_kind.submit("huge-message").wait(60)
            assert state is not None
            return state.type

        assert failing() is StateType.FAILED
        with Client(cluster.scheduler_address) as client:
            client.submit(_plain_failure, key="plain-failure").exception(60)
        seen: list[str] = []

        def plain_logged() -> bool:
            seen.append(capfd.readouterr().err)
            return "plain-failure" in "".join(seen)

        assert wait_until(plain_logged, 30), "a plain task's error is no longer logged"
        assert "TaskOutcome" not in "".join(seen)
    finally:
        cluster.close(timeout=30)
