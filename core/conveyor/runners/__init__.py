"""
The runner SPI (the protocol every runner implements, the attempts it executes) and the
built-in runners.
"""

from __future__ import annotations

from conveyor.runners.attempt import Attempt, AttemptReporter, PendingResult, is_async_callable
from conveyor.runners.concurrent import ConcurrentRunner
from conveyor.runners.protocol import Capabilities, ConcurrencyType, Runner
from conveyor.runners.sequential import SequentialRunner

__all__ = [
    "Attempt",
    "AttemptReporter",
    "Capabilities",
    "ConcurrencyType",
    "ConcurrentRunner",
    "PendingResult",
    "Runner",
    "SequentialRunner",
    "is_async_callable",
]
