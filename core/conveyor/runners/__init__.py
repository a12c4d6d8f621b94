"""
The runner protocol and the built-in runners.
"""

from __future__ import annotations

from conveyor.runners.base import Attempt, Capabilities, ConcurrencyType, PendingResult, Runner
from conveyor.runners.concurrent import ConcurrentRunner
from conveyor.runners.sequential import SequentialRunner

__all__ = [
    "Attempt",
    "Capabilities",
    "ConcurrencyType",
    "ConcurrentRunner",
    "PendingResult",
    "Runner",
    "SequentialRunner",
]
