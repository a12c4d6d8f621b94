"""
One worker process as the driver sees it: the process, its pipe, and the run it was given.

Workers are started with SIGINT blocked, so a Ctrl-C to the terminal's process group cannot
reach one before it ignores SIGINT (see :mod:`~conveyor.runners.processes.child`), and they are
not daemonic, so that a task may start processes of its own. Every field is read and written
under the pool's lock, except by the dispatcher thread for what only it touches (the pipe's
reading end, ``ready``, ``exited``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from conveyor.runners.processes import child
from conveyor.runners.processes.bootstrap import WORKER_NAME
from conveyor.runners.processes.helpers import blocked_sigint

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from conveyor.runners.attempt import Attempt

__all__ = ["Worker"]


class Worker:
    """A started worker process of one pool."""

    __slots__ = (
        "attempt",
        "conn",
        "exited",
        "failed",
        "kill_at",
        "number",
        "process",
        "ready",
        "retiring",
        "runs",
        "stopping",
        "unsent",
    )

    def __init__(self, context: Any, number: int, settings: bytes) -> None:
        conn, theirs = context.Pipe(duplex=True)
        self.number = number
        self.process: Any = context.Process(
            target=child.main,
            args=(theirs, settings),
            name=f"{WORKER_NAME}-{number}",
            daemon=False,
        )
        try:
            with blocked_sigint():
                self.process.start()
        except BaseException:
            conn.close()
            raise
        finally:
            theirs.close()
        self.conn: Connection = conn
        #: The attempt this worker runs (or was just given), None when it is idle.
        self.attempt: Attempt | None = None
        #: The calls it reported.
        self.runs = 0
        #: It said it is ready; until then it runs nothing.
        self.ready = False
        #: Its hello said why it could not get ready.
        self.failed = False
        #: It reported as many calls as ``max_tasks_per_child`` and exits by itself.
        self.retiring = False
        #: It was told to stop (a cancel, a timeout, the pool closing): it gets no more work.
        self.stopping = False
        #: When it is killed if it has not exited by then (monotonic seconds), or None.
        self.kill_at: float | None = None
        #: Its process is gone and reaped.
        self.exited = False
        #: A payload that could not be sent to it, for the next worker.
        self.unsent: bytes | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.number} pid={self.pid}>"

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return int(self.process.pid)

    @property
    def sentinel(self) -> int:
        """A file descriptor that becomes readable when the process ends."""
        return int(self.process.sentinel)

    def send(self, payload: bytes) -> bool:
        """Send ``payload``; False if the worker's pipe is closed (it died)."""
        try:
            self.conn.send_bytes(payload)
        except OSError:
            return False
        return True

    def terminate(self, grace: float) -> None:
        """Ask the worker to stop (SIGTERM) and have it killed if it lives ``grace`` s more."""
        self.stopping = True
        if self.kill_at is None:
            self.kill_at = time.monotonic() + grace
            self._signal(signal.SIGTERM)

    def stop(self, grace: float, message: bytes) -> None:
        """Send ``message`` (the stop request) and have it killed if it lives ``grace`` s more."""
        self.stopping = True
        if self.kill_at is None:
            self.kill_at = time.monotonic() + grace
        if not self.send(message):
            self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """End the worker now (SIGKILL)."""
        self.stopping = True
        self.kill_at = time.monotonic()
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if not self.exited:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signum)

    def exit_code(self) -> int | None:
        """The exit code (negative: the signal that killed it), once it has ended."""
        code = self.process.exitcode
        return None if code is None else int(code)

    def close(self) -> None:
        """Release the pipe and the process handle of a worker that has ended."""
        self.exited = True
        self.conn.close()
        with contextlib.suppress(ValueError):
            self.process.close()
