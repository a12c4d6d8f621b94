"""
Interrupts for the CLI: SIGINT and SIGTERM run the normal shutdown once; a second signal exits
at once, after killing every process this one started.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from conveyor.exceptions import Terminated


def exit_code(signum: int) -> int:
    """The shell's exit code for a process ended by ``signum``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


def descendants(pid: int | None = None) -> list[int]:
    """PIDs of every living descendant of ``pid`` (default: this process), from /proc."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) < 2 or fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_descendants(grace: float = 3.0) -> None:
    """SIGTERM every descendant process, then SIGKILL those still alive after ``grace`` s."""
    pids = descendants()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        if pids:
            time.sleep(0.05)
    for pid in descendants() + pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


@contextmanager
def interrupt_handling() -> Iterator[Callable[[], None]]:
    """
    Inside the block, SIGINT raises KeyboardInterrupt and SIGTERM raises :class:`Terminated` in
    the main thread, once; a second signal kills every descendant process and exits at once.

    Yields a function that installs the handlers again: a backend that installs its own when it
    starts (Ray's core worker does, for SIGTERM) would otherwise take over.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) > 1:
            sys.stderr.write("conveyor: second interrupt, exiting now\n")
            for pid in descendants():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            os._exit(exit_code(received[0]))
        if signum == signal.SIGTERM:
            raise Terminated
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def reinstall() -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in previous:
                signal.signal(sig, handler)

    try:
        yield reinstall
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
