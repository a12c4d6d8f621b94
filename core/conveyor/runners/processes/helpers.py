"""
multiprocessing's helper processes, the forkserver and the resource tracker, and how the
``processes`` runner starts them and stops the ones it started.

multiprocessing starts each of them once per program and shares it with every user of
multiprocessing in that program; it never stops them before the program exits. The runner
claims them while it is started: when the first claim is made, it notes which of them already
run; when the last claim is released, it stops those that did not (so a runner started by a
program that was already using multiprocessing leaves that program's helpers alone). If the
program starts using multiprocessing itself while a runner holds them, they are stopped all
the same, and multiprocessing starts them again the next time it needs them.

The forkserver the runner starts imports conveyor's worker module (and cloudpickle) once, so
that a worker, forked from it, starts in milliseconds. multiprocessing has no public API to stop
its helpers: this module is the one place that calls their ``_stop()`` (what CPython's own
tests use), reached with ``getattr`` so it is plain to see.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["PRELOAD", "blocked_signals", "claim", "release"]

#: The modules the runner's forkserver imports before it forks workers.
PRELOAD = ["conveyor.runners.processes.child", "cloudpickle"]

# How long a helper may take to exit once asked before it is killed (it holds nothing of ours).
_STOP_GRACE = 2.0

_lock = threading.Lock()
_claims = 0
_ours: dict[str, bool] = {}


def _helpers() -> dict[str, tuple[Any, str]]:
    """Each helper's singleton and the name of its pid attribute."""
    from multiprocessing import forkserver, resource_tracker  # deferred: runners start them

    return {
        "forkserver": (getattr(forkserver, "_forkserver", None), "_forkserver_pid"),
        "resource tracker": (getattr(resource_tracker, "_resource_tracker", None), "_pid"),
    }


def _running(helper: Any, pid_attr: str) -> bool:
    return helper is not None and getattr(helper, pid_attr, None) is not None


@contextlib.contextmanager
def blocked_signals() -> Iterator[None]:
    """
    Block SIGINT and SIGTERM in this thread: a process started meanwhile inherits the mask, so
    a Ctrl-C (or a SIGTERM) to the whole process group cannot reach it before it has set its own
    handling. The forkserver never unblocks them: only the driver stops it.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def claim(start_method: str) -> None:
    """
    Make sure the helpers ``start_method`` needs run, started with SIGINT blocked, and note
    which of them this claim started.
    """
    from multiprocessing import forkserver, resource_tracker  # deferred: runners start them

    global _claims
    with _lock:
        helpers = _helpers()
        if _claims == 0:
            _ours.clear()
            _ours.update({name: not _running(*found) for name, found in helpers.items()})
        _claims += 1
        # The tracker first: starting it unblocks SIGINT and SIGTERM in the calling thread.
        resource_tracker.ensure_running()
        if start_method != "forkserver":
            return
        server = helpers["forkserver"][0]
        if _running(server, "_forkserver_pid") or server is None:
            return
        previous = getattr(server, "_preload_modules", None)
        forkserver.set_forkserver_preload(PRELOAD)
        try:
            with blocked_signals():
                forkserver.ensure_running()
        finally:
            if previous is not None:
                forkserver.set_forkserver_preload(previous)


def _stop(name: str, helper: Any, pid_attr: str) -> None:
    """Stop a helper by its own ``_stop()``, killing it if it has not exited in time."""
    pid = getattr(helper, pid_attr, None)
    stop = getattr(helper, "_stop", None)
    if pid is None or stop is None:
        return
    stopper = threading.Thread(target=stop, name=f"conveyor-stop-{name}", daemon=True)
    stopper.start()
    stopper.join(_STOP_GRACE)
    if stopper.is_alive():  # something else still holds its pipe (a task's grandchild, say)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        stopper.join(_STOP_GRACE)


def release() -> None:
    """Release a claim; the last one stops the helpers the claims started."""
    global _claims
    with _lock:
        _claims = max(0, _claims - 1)
        if _claims:
            return
        for name, (helper, pid_attr) in _helpers().items():
            if _ours.get(name) and _running(helper, pid_attr):
                _stop(name, helper, pid_attr)
        _ours.clear()
