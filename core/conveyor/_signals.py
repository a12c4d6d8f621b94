"""
Interrupts for the CLI: SIGINT and SIGTERM run the normal shutdown once; a second signal exits
at once, after killing every process this one started.

Process trees are read through psutil where it can be imported (it comes with both plugins),
and from ``/proc`` only where it cannot.
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
from typing import Any

from conveyor._interrupts import counting, note_interrupt
from conveyor.exceptions import Terminated

try:
    import psutil  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - psutil comes with both plugins; tests force the fallback
    psutil = None

__all__ = [
    "descendants",
    "exit_code",
    "interrupt_handling",
    "kill_descendants",
    "proc_descendants",
]

# A platform without SIGKILL (Windows) ends a process with what it has; psutil's kill() does
# the right thing there, this is for the /proc fallback.
_KILL = getattr(signal, "SIGKILL", signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The shell's exit code for a process ended by ``signum``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


def proc_descendants(pid: int | None = None) -> list[int]:
    """PIDs of every living descendant of ``pid`` (default: this process), read from /proc."""
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


def descendants(pid: int | None = None) -> list[int]:
    """
    PIDs of every living (not zombie) descendant of ``pid`` (default: this process): through
    psutil, or from /proc where psutil is not installed.
    """
    if psutil is None:
        return proc_descendants(pid)
    return [proc.pid for proc in _PsutilTree.living(pid)]


class _PsutilTree:
    """Processes as ``psutil.Process`` objects, which are safe against PID reuse."""

    @staticmethod
    def living(pid: int | None) -> list[Any]:
        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            return []
        return [c for c in children if _PsutilTree.alive(c)]

    @staticmethod
    def alive(proc: Any) -> bool:
        try:
            return bool(proc.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    @staticmethod
    def end(proc: Any, hard: bool) -> None:
        try:
            if hard:
                proc.kill()
            else:
                proc.terminate()
        except psutil.Error:
            pass


class _ProcTree:
    """Processes as PIDs from /proc: the fallback where psutil is not installed."""

    living = staticmethod(proc_descendants)

    @staticmethod
    def alive(pid: Any) -> bool:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
        except (OSError, IndexError):
            return False

    @staticmethod
    def end(pid: Any, hard: bool) -> None:
        try:
            os.kill(pid, _KILL if hard else signal.SIGTERM)
        except OSError:
            pass


def _tree() -> type[_PsutilTree] | type[_ProcTree]:
    return _ProcTree if psutil is None else _PsutilTree


def kill_descendants(grace: float = 3.0) -> None:
    """Terminate every descendant process, then kill those still alive after ``grace`` s."""
    tree = _tree()
    procs = tree.living(None)
    for proc in procs:
        tree.end(proc, hard=False)
    deadline = time.monotonic() + grace
    while procs and time.monotonic() < deadline:
        procs = [p for p in procs if tree.alive(p)]
        if procs:
            time.sleep(0.05)
    for proc in tree.living(None) + procs:
        tree.end(proc, hard=True)


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
            tree = _tree()
            for proc in tree.living(None):
                tree.end(proc, hard=True)
            os._exit(exit_code(received[0]))
        note_interrupt()
        if signum == signal.SIGTERM:
            raise Terminated
        raise KeyboardInterrupt

    counting(handler)
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
