"""
One worker process as the driver sees it: the process, its pipe, and the run it was given.

Workers are started with SIGINT and SIGTERM blocked, so a Ctrl-C to the terminal's process
group cannot reach one before it has set its own handling (see :mod:`~conveyor.runners.processes.child`), and they are
not daemonic, so that a task may start processes of its own. Every field is read and written
under the pool's lock, except by the dispatcher thread for what only it touches (the pipe's
reading end, ``ready``, ``exited``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from conveyor.runners.processes import child
from conveyor.runners.processes.bootstrap import WORKER_NAME
from conveyor.runners.processes.helpers import blocked_signals

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from conveyor.runners.attempt import Attempt

__all__ = ["Worker"]

_living: weakref.WeakSet[Worker] = weakref.WeakSet()
_living_lock = threading.Lock()


def _kill_the_living() -> None:
    """
    At interpreter exit, kill the workers of pools nobody stopped: multiprocessing joins its
    non-daemonic children then, and would wait for them.
    """
    for worker in list(_living):
        worker.kill()


class Worker:
    """A started worker process of one pool."""

    __slots__ = (
        "__weakref__",
        "attempt",
        "conn",
        "exited",
        "failed",
        "forked",
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
        #: Forked by the forkserver, which tells the driver how it ended.
        self.forked = context.get_start_method() == "forkserver"
        self.process: Any = context.Process(
            target=child.main,
            args=(theirs, settings),
            name=f"{WORKER_NAME}-{number}",
            daemon=False,
        )
        try:
            with blocked_signals():
                self.process.start()
        except BaseException:
            conn.close()
            raise
        finally:
            theirs.close()
        self.conn: Connection = conn
        with _living_lock:
            if not _living:  # registered after multiprocessing's exit handler: runs before it
                atexit.unregister(_kill_the_living)
                atexit.register(_kill_the_living)
            _living.add(self)
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

    def has_message(self) -> bool:
        """Whether a message (or the end of the pipe) waits to be read."""
        try:
            return bool(self.conn.poll())
        except OSError:
            return False

    def terminate(self, grace: float) -> None:
        """Ask the worker to stop what it runs (its stop signal) and have it killed if it lives
        ``grace`` s more."""
        self.stopping = True
        if self.kill_at is None:
            self.kill_at = time.monotonic() + grace
            self._signal(child.STOP_SIGNAL)

    def stop(self, grace: float, message: bytes) -> None:
        """Send ``message`` (the stop request) and have it killed if it lives ``grace`` s more."""
        self.stopping = True
        if self.kill_at is None:
            self.kill_at = time.monotonic() + grace
        if not self.send(message):
            self._signal(child.STOP_SIGNAL)

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
        """The exit code (negative: the signal that killed it) of a worker whose sentinel fired."""
        # The sentinel fires as the process closes its files, a moment before it can be reaped.
        self.process.join(5.0)
        code = self.process.exitcode
        return None if code is None else int(code)

    def outlived_its_watch(self, code: int | None) -> bool:
        """
        Whether the process still runs though its sentinel fired: a forkserver worker's end is
        told by the forkserver, and a forkserver that died reports all its workers ended (with
        code 255) while they live on.
        """
        if not self.forked or code != 255:
            return False
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Release the pipe and the process handle of a worker that has ended."""
        with _living_lock:
            _living.discard(self)
        self.exited = True
        self.conn.close()
        with contextlib.suppress(ValueError):
            self.process.close()
