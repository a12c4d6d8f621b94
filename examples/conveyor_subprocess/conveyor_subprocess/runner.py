"""
The ``subprocess`` runner: each task attempt runs in a fresh child Python process.

How it works, in three steps per attempt:

1. the driver packs the call with :func:`conveyor.runners.remote.pack_or_crash` (an argument
   that cannot be pickled crashes the attempt at submit, and its body never runs);
2. a child ``python -m conveyor_subprocess._child`` reads the payload on stdin, runs it with
   :func:`conveyor.runners.remote.run_packed` and writes the pickled ``(Outcome, value)`` to
   stdout;
3. a driver thread turns that into the run's state with
   :func:`conveyor.runners.remote.report_outcome`. A child that exits without writing a result
   (``os._exit``, a segfault, SIGKILL) makes the attempt CRASHED with reason ``worker-died``.

Because the runner owns the child, it can stop the work for real: a timeout or a ``cancel()``
kills the process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import attrs

from conveyor import (
    Attempt,
    BackendUnavailable,
    Capabilities,
    ConcurrencyType,
    CrashReason,
    Runner,
    validators,
)

__all__ = ["SubprocessRunner"]


@attrs.define(kw_only=True, eq=True)
class SubprocessRunner(Runner):
    """
    Runs each task attempt in a new Python process, at most ``max_workers`` at a time; the
    others wait in submission order.

    ``python`` is the interpreter for the children. By default it is the driver's own
    (``sys.executable``) and the children see the driver's ``sys.path``; another interpreter
    must have ``conveyor-subprocess`` and the tasks' modules installed.
    """

    name = "subprocess"
    concurrency = ConcurrencyType.PARALLEL
    capabilities = Capabilities(hard_timeouts=True, cancel_running=True, isolation=True)

    max_workers: int = attrs.field(
        default=2, validator=validators.whole_number(minimum=1, hint="the default is 2")
    )
    python: str | None = None

    # Live resources: they exist between start() and stop() only.
    _pool: ThreadPoolExecutor | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _children: dict[Attempt, subprocess.Popen[bytes]] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, eq=False, repr=False)
    _stopping: bool = attrs.field(default=False, init=False, eq=False, repr=False)
    _command: list[str] = attrs.field(factory=list, init=False, eq=False, repr=False)
    _env: dict[str, str] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    # -- lifecycle --------------------------------------------------------------------------

    def on_start(self) -> None:
        python = self.python or sys.executable
        if shutil.which(python) is None:
            msg = (
                f"SubprocessRunner: the interpreter `python={python!r}` was not found; give the "
                "path of a Python that has conveyor-subprocess installed."
            )
            raise BackendUnavailable(msg)
        self._command = [python, "-m", "conveyor_subprocess._child"]
        if self.python is None:  # same interpreter: the children import what the driver can
            path = os.pathsep.join(p or os.getcwd() for p in sys.path)
            self._env = {**os.environ, "PYTHONPATH": path}
        self._stopping = False
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="conveyor-subprocess")

    def on_stop(self) -> None:
        with self._lock:
            self._stopping = True  # queued attempts will not start from now on
            children = list(self._children.values())
        for child in children:
            child.kill()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)  # each thread returns once its child is gone

    # -- running attempts -------------------------------------------------------------------

    def execute(self, attempt: Attempt) -> None:
        # Deferred: the envelope (pickling) is needed once attempts run, not to list the runner.
        from conveyor.runners.remote import pack_or_crash

        packed = pack_or_crash(attempt)
        if packed is None:  # already reported as CRASHED argument-serialization
            return
        payload, _deps = packed
        assert self._pool is not None
        self._pool.submit(self._drive, attempt, payload)

    def _drive(self, attempt: Attempt, payload: bytes) -> None:
        """Run one attempt in a child process and report how it ended (a pool thread)."""
        # Deferred, as in execute(): the envelope is not needed to list the runner.
        from conveyor.runners.remote import loads, report_outcome

        child = self._spawn(attempt)
        if child is None:
            return
        attempt.mark_running()  # the run is RUNNING now
        try:
            out, _ = child.communicate(payload)
        finally:
            with self._lock:
                self._children.pop(attempt, None)
        if child.returncode != 0:
            attempt.crash(
                f"The process running {attempt.name!r} {_describe_exit(child.returncode)} "
                "before it reported a result.",
                reason=CrashReason.WORKER_DIED,
            )
            return
        try:
            outcome, value = loads(out)
        except Exception as exc:
            attempt.crash(
                f"The result of {attempt.name!r} could not be unpickled here: "
                f"{type(exc).__name__}: {exc}",
                reason=CrashReason.RESULT_DESERIALIZATION,
                exc=exc,
            )
            return
        report_outcome(attempt, outcome, value)

    def _spawn(self, attempt: Attempt) -> subprocess.Popen[bytes] | None:
        """Start the child for ``attempt``, or report why not and return None."""
        with self._lock:  # cancel() takes this lock too: it sees the child, or none will start
            if attempt.finished:  # cancelled or timed out while queued: never starts
                return None
            if self._stopping:
                problem = f"Runner 'subprocess' stopped before {attempt.name!r} started."
                reason = CrashReason.RUNNER_STOPPED
            else:
                try:
                    child = subprocess.Popen(
                        self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self._env
                    )
                except OSError as exc:
                    problem = f"Could not start a Python process for {attempt.name!r}: {exc}"
                    reason = CrashReason.BACKEND_ERROR
                else:
                    self._children[attempt] = child
                    return child
        attempt.crash(problem, reason=reason)  # report outside the lock
        return None

    def cancel(self, attempt: Attempt) -> bool:
        with self._lock:
            child = self._children.get(attempt)
        if child is not None:
            child.kill()  # its driver thread sees it die and returns
        return True  # killed, finished, or queued (and then it never starts)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
