"""The dask runner passes conveyor's conformance suite, on a small LocalCluster it starts."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("conveyor_dask")

from conveyor.testing import RunnerConformance
from conveyor_dask import DaskRunner


class TestDaskConformance(RunnerConformance):
    @pytest.fixture
    def runner(self, cluster: Any) -> DaskRunner:
        return DaskRunner(address=cluster.scheduler_address)
