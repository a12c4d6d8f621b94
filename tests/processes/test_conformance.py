"""conveyor's conformance suite, run against the processes runner with all it declares."""

from __future__ import annotations

import pytest

from conveyor.runners.processes import ProcessesRunner
from conveyor.testing import RunnerConformance


class TestProcessesRunner(RunnerConformance):
    @pytest.fixture
    def runner(self) -> ProcessesRunner:
        return ProcessesRunner(max_workers=2, cancel_grace_seconds=0.5)
