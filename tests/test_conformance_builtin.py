"""The built-in runners pass the conformance suite."""

from __future__ import annotations

import pytest

from conveyor.runners import ConcurrentRunner, SequentialRunner
from conveyor.testing import RunnerConformance


class TestSequentialConformance(RunnerConformance):
    @pytest.fixture
    def runner(self) -> SequentialRunner:
        return SequentialRunner()


class TestConcurrentConformance(RunnerConformance):
    @pytest.fixture
    def runner(self) -> ConcurrentRunner:
        return ConcurrentRunner(max_workers=4)


class TestConcurrentOneWorkerConformance(RunnerConformance):
    @pytest.fixture
    def runner(self) -> ConcurrentRunner:
        return ConcurrentRunner(max_workers=1)
