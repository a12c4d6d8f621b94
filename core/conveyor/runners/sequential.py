"""
The ``sequential`` runner: each submitted run executes at once, in the caller's thread, in order.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import attrs

from conveyor.runners.attempt import Attempt
from conveyor.runners.protocol import Capabilities, ConcurrencyType, Runner

if TYPE_CHECKING:
    from conveyor.runners._loop import LoopThread

__all__ = ["SequentialRunner"]


@attrs.define(kw_only=True, eq=True)
class SequentialRunner(Runner):
    """
    Runs each submission at once and returns when it is final, so runs happen in submission
    order. Sync tasks run in the submitting thread; a sync task with a timeout runs on a
    helper thread so the caller regains control on time. Async tasks run on the runner's
    event loop thread, and are really stopped at their timeout or on cancel.
    """

    name = "sequential"
    concurrency = ConcurrencyType.SEQUENTIAL
    capabilities = Capabilities()

    _loop: LoopThread | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _loop_lock: threading.Lock = attrs.field(
        factory=threading.Lock, init=False, eq=False, repr=False
    )

    def _event_loop(self) -> LoopThread:
        with self._loop_lock:
            if self._loop is None:
                from conveyor.runners._loop import LoopThread  # deferred: it imports asyncio

                self._loop = LoopThread("conveyor-sequential-loop")
            return self._loop

    def on_stop(self) -> None:
        with self._loop_lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()

    def execute(self, attempt: Attempt) -> None:
        if attempt.is_async:
            attempt.handle = self._event_loop().submit(attempt.call_async())
        elif attempt.timeout is None:
            attempt.call()
        else:
            thread = threading.Thread(
                target=attempt.call, name=f"conveyor-{attempt.name}", daemon=True
            )
            attempt.handle = thread
            thread.start()

    def cancel(self, attempt: Attempt) -> bool:
        handle: Any = attempt.handle
        if attempt.is_async and handle is not None:
            handle.cancel()
            return True
        return False  # a sync call in a thread cannot be interrupted
