"""
The runner of async tasks called inline from async code: it runs them on the caller's own
event loop. One started instance serves the process; it is made on first use, never at import.
"""

from __future__ import annotations

import threading
from typing import Any

from conveyor.runners.attempt import Attempt
from conveyor.runners.protocol import ConcurrencyType, Runner

__all__ = ["LoopInlineRunner", "loop_inline_runner"]


class LoopInlineRunner(Runner):
    """Runs async tasks called inline from async code on the caller's own event loop."""

    name = "inline"
    concurrency = ConcurrencyType.CONCURRENT

    def execute(self, attempt: Attempt) -> None:
        import asyncio  # deferred: only async flows get here

        loop = asyncio.get_running_loop()
        attempt.handle = (loop, loop.create_task(attempt.call_async()))

    def cancel(self, attempt: Attempt) -> bool:
        if attempt.handle is None:
            return True
        loop, task = attempt.handle
        loop.call_soon_threadsafe(task.cancel)
        return True


_lock = threading.Lock()
_shared: list[Any] = []


def loop_inline_runner() -> LoopInlineRunner:
    """The process's started :class:`LoopInlineRunner` (it holds no resources to stop)."""
    if not _shared:
        with _lock:
            if not _shared:
                _shared.append(LoopInlineRunner().start())
    runner: LoopInlineRunner = _shared[0]
    return runner
