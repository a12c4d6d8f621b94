"""The runner conformance suite, on the session's Ray cluster."""

from __future__ import annotations

import pytest

pytest.importorskip("conveyor_ray")

from conveyor.testing import RunnerConformance
from conveyor_ray import RayRunner


class TestRayConformance(RunnerConformance):
    @pytest.fixture
    def runner(self, ray_address: str) -> RayRunner:
        return RayRunner(address=ray_address)
