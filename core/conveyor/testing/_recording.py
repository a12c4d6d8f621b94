"""
The observer the conformance suite records state changes with, and its crash-reason check.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from conveyor.futures import RunFuture
from conveyor.plugins.hookspecs import hookimpl
from conveyor.states import CrashReason, State

__all__ = ["Recorder", "assert_reasons_are_members"]


class Recorder:
    """An observer plugin that records every state change of every task run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changes: list[tuple[str, State[Any], State[Any]]] = []

    @hookimpl
    def conveyor_task_run_state_changed(
        self, future: RunFuture[Any], old: State[Any], new: State[Any]
    ) -> None:
        with self.lock:
            self.changes.append((future.name, old, new))

    def unknown_reasons(self) -> list[str]:
        """The crash reasons seen that are not :class:`~conveyor.CrashReason` members."""
        with self.lock:
            return [
                f"{name}: {new.reason!r}"
                for name, _, new in self.changes
                if new.is_crashed() and not isinstance(new.reason, CrashReason)
            ]

    def finals(self) -> Counter[str]:
        with self.lock:
            return Counter(name for name, _, new in self.changes if new.is_final())


def assert_reasons_are_members(recorder: Recorder) -> None:
    unknown = recorder.unknown_reasons()
    assert not unknown, (
        "the runner crashed runs with reasons that are not conveyor.CrashReason members "
        f"({'; '.join(unknown)}); pass a CrashReason member to Attempt.crash(reason=...)"
    )
