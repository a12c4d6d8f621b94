"""
Tools for testing runners: the conformance suite every runner should pass, and bounded waiting.
"""

from __future__ import annotations

from conveyor.testing._waiting import wait_until
from conveyor.testing.conformance import RunnerConformance

__all__ = ["RunnerConformance", "wait_until"]
