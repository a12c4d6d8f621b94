"""
Tools for testing runners: the conformance suite every runner should pass.
"""

from __future__ import annotations

from conveyor.testing.conformance import RunnerConformance

__all__ = ["RunnerConformance"]
