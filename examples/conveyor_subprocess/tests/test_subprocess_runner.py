"""conveyor's conformance suite, run against SubprocessRunner: all a plugin needs to prove."""

from __future__ import annotations

import pytest

from conveyor.testing import RunnerConformance
from conveyor_subprocess import SubprocessRunner


class TestSubprocessRunner(RunnerConformance):
    @pytest.fixture
    def runner(self) -> SubprocessRunner:
        return SubprocessRunner(max_workers=2)
