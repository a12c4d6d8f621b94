"""
Fixtures for the Dask runner tests: one small LocalCluster of worker processes for the module,
and a folder where task bodies record each execution (counted with
``tests.dask._support.count_runs``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_dask")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """
    A cluster of 2 worker processes x 1 thread on 127.0.0.1, offering GPU=1 each, its scheduler in
    a process of its own (as the runner's default cluster has it).
    """
    import dask

    from conveyor_dask.cluster import LocalProcessCluster
    from conveyor_dask.runner import OWNED_CLUSTER_CONFIG

    with dask.config.set(OWNED_CLUSTER_CONFIG):
        c = LocalProcessCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            resources={"GPU": 1},
        )
    yield c
    c.close(timeout=30)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A folder where tasks record each execution of their body as one file."""
    d = tmp_path / "runs"
    d.mkdir()
    return d


@pytest.fixture(scope="session", autouse=True)
def _stop_resource_tracker() -> Iterator[None]:
    """
    Worker processes are spawned, which starts multiprocessing's resource tracker process in
    this one; stop it (by its own protocol) when the Dask tests are done, so it is not left behind.
    """
    yield
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker
    if getattr(tracker, "_pid", None) is not None and hasattr(tracker, "_stop"):
        tracker._stop()
