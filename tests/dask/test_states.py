"""The states a run passes through on Dask, as observers and futures see them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_dask")

from conveyor import flow
from conveyor.plugins import PluginHost, use_host
from conveyor.testing import _tasks as shared
from conveyor.testing import wait_until
from conveyor_dask import DaskRunner
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
