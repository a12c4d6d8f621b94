"""
The driver's pool of worker processes and its one dispatcher thread.

Runs wait in one queue, in submission order, and go to whichever worker is idle: a run
submitted while a worker is idle is handed to it at once, by the submitting thread; the others
are handed out by the dispatcher the moment a worker reports, before that report reaches the
engine, so no worker idles while work is pending. The engine submits a run only once the runs
it depends on are final, so a run waiting on a dependency never holds a worker.

The dispatcher waits on every worker's pipe and process sentinel at once. A worker that dies
ends only the run it had (see :mod:`~conveyor.runners.processes.reports`) and is replaced. A
cancelled or timed-out run's worker gets its stop signal, then SIGKILL after the grace period, and is
replaced. Queued runs that were cancelled are dropped when their turn comes: they never start.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import selectors
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from conveyor.exceptions import BackendUnavailable, ConveyorError
from conveyor.runners.processes import framing
from conveyor.runners.processes.bootstrap import EXIT_UNGUARDED, main_script, unguarded_error
from conveyor.runners.processes.deaths import OomCounter, describe_exit
from conveyor.runners.processes.reports import report_death, report_result
from conveyor.runners.processes.startup import StartWatch
from conveyor.runners.processes.workers import Worker
from conveyor.runners.remote import loads
from conveyor.states import CrashReason

if TYPE_CHECKING:
    from conveyor.runners.attempt import Attempt

__all__ = ["WorkerPool"]

logger = logging.getLogger("conveyor")

_WAKE, _PIPE, _EXIT = "wake", "pipe", "exit"


class WorkerPool:
    """``size`` worker processes of a multiprocessing ``context``, and the runs they serve."""

    def __init__(
        self,
        context: Any,
        *,
        size: int,
        settings: bytes,
        max_tasks: int | None,
        memory_limit: int | None,
        grace: float,
        runner_name: str,
    ) -> None:
        self._context = context
        self._size = size
        self._settings = settings
        self._max_tasks = max_tasks
        self._memory_limit = memory_limit
        self._grace = grace
        self._name = runner_name
        self._lock = threading.Lock()
        self._queue: deque[tuple[Attempt, bytes]] = deque()
        self._idle: list[Worker] = []
        self._workers: set[Worker] = set()
        self._numbers = itertools.count(1)
        self._closing = False
        self._broken: str | None = None
        self._start = StartWatch(size, runner_name)
        self._oom = OomCounter()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, (_WAKE, None))
        self._thread = threading.Thread(
            target=self._loop, name=f"conveyor-{runner_name}-dispatcher", daemon=True
        )

    # -- lifecycle (the runner's thread) ------------------------------------------------------

    def start(self, timeout: float) -> None:
        """Start the workers and return once every one is ready; raise if one cannot be."""
        for _ in range(self._size):
            self._add_worker()
        self._thread.start()
        self._start.wait(timeout)

    def close(self, hurry: bool = False) -> None:
        """
        Stop every worker (idle ones are told, busy ones get the stop signal, then SIGKILL after the
        grace period; all at once with ``hurry``) and the dispatcher. Runs still queued or
        running end CRASHED ``runner-stopped``.
        """
        with self._lock:
            self._closing = True
            queued = [a for a, _ in self._queue]
            self._queue.clear()
            running = [w.attempt for w in self._workers if w.attempt is not None]
        for attempt in queued:
            if not attempt.finished:
                attempt.crash(
                    f"Runner {self._name!r} stopped before {attempt.name!r} started.",
                    reason=CrashReason.RUNNER_STOPPED,
                )
        for attempt in running:
            if not attempt.finished:
                attempt.crash(
                    f"Runner {self._name!r} stopped while {attempt.name!r} was running.",
                    reason=CrashReason.RUNNER_STOPPED,
                )
        if hurry:
            self.kill_workers()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(self._grace + 5.0)
        if self._thread.is_alive():  # a worker that does not die: it should not happen
            self.kill_workers()
            self._thread.join(5.0)
        if not self._thread.is_alive():
            self._release()

    def kill_workers(self) -> None:
        """SIGKILL every worker now."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.kill()
        self._wake()

    def _release(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers), set()
        for worker in workers:
            worker.close()
        self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- runs (any thread) ----------------------------------------------------------------------

    def submit(self, attempt: Attempt, payload: bytes) -> None:
        """Run ``attempt`` on an idle worker now, or queue it for the next one free."""
        with self._lock:
            if self._closing:
                problem = f"Runner {self._name!r} is stopping; {attempt.name!r} never started."
                reason = CrashReason.RUNNER_STOPPED
            elif self._broken is not None:
                problem, reason = self._broken, CrashReason.BACKEND_ERROR
            elif not self._idle:
                self._queue.append((attempt, payload))
                return
            else:
                worker = self._idle.pop()
                worker.attempt = attempt
                attempt.handle = worker
                problem = ""
        if problem:
            attempt.crash(problem, reason=reason)
            return
        self._dispatch(worker, attempt, payload, first=True)

    def cancel(self, attempt: Attempt) -> bool:
        """Stop ``attempt``: a queued one never starts, a running one's worker is ended."""
        with self._lock:
            worker = attempt.handle
            if not isinstance(worker, Worker) or worker.attempt is not attempt:
                return True  # queued (it is dropped when its turn comes) or already reported
            worker.terminate(self._grace)
        self._wake()  # the dispatcher kills it when the grace runs out
        return True

    def _dispatch(self, worker: Worker, attempt: Attempt, payload: bytes, first: bool) -> None:
        """
        Send the run to its worker. The engine hears it is running before (``first``: from
        another thread, which the report could overtake) or after, so that the dispatcher's
        worker gets its payload without waiting for the engine and its observers.
        """
        if first:
            attempt.mark_running()
        if not worker.send(payload):
            with self._lock:  # it died: its exit hands the run to the next worker
                if worker.attempt is attempt:
                    worker.unsent = payload
        if not first:
            attempt.mark_running()  # its report is read by this thread, after this

    def _next(self, worker: Worker) -> tuple[Attempt, bytes] | None:
        """Under the lock: give ``worker`` the next queued run, or make it idle."""
        if worker.stopping or worker.retiring or self._closing or self._broken is not None:
            return None
        while self._queue:
            attempt, payload = self._queue.popleft()
            if not attempt.finished:  # cancelled or timed out while queued: it never starts
                worker.attempt = attempt
                attempt.handle = worker
                return attempt, payload
        self._idle.append(worker)
        return None

    # -- the dispatcher thread ----------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (it is awake anyway) or closed (it is done)
            os.write(self._wake_w, b"!")

    def _add_worker(self) -> None:
        worker = Worker(self._context, next(self._numbers), self._settings)
        with self._lock:
            self._workers.add(worker)
        self._selector.register(worker.conn.fileno(), selectors.EVENT_READ, (_PIPE, worker))
        self._selector.register(worker.sentinel, selectors.EVENT_READ, (_EXIT, worker))

    def _loop(self) -> None:
        try:
            while True:
                for key, _ in self._selector.select(self._kill_due()):
                    kind, worker = key.data
                    if kind == _WAKE:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                    elif kind == _PIPE and not worker.exited:
                        self._on_message(worker, self._receive(worker))
                    elif kind == _EXIT and not worker.exited:
                        self._on_exit(worker)
                with self._lock:
                    closing, left = self._closing, list(self._workers)
                if closing and not left:
                    return
                if closing:
                    for worker in left:
                        self._stop_worker(worker)
        except BaseException:  # nothing would report the runs any more: end them all now
            logger.exception("The dispatcher of runner %r failed.", self._name)
            self._give_up(f"The dispatcher of runner {self._name!r} failed; see the log.", True)
            self.kill_workers()

    def _kill_due(self) -> float | None:
        """SIGKILL the workers whose grace ran out; the seconds until the next one is due."""
        with self._lock:
            due = [w.kill_at for w in self._workers if w.kill_at is not None and not w.exited]
        if not due:
            return None
        now = time.monotonic()
        if min(due) <= now:
            with self._lock:
                late = [w for w in self._workers if w.kill_at is not None and w.kill_at <= now]
            for worker in late:
                worker.kill()  # again every 50 ms until its sentinel says it is gone
            return 0.05
        return min(due) - now

    def _stop_worker(self, worker: Worker) -> None:
        """While the pool closes: tell an idle worker to stop, end a busy or starting one."""
        if worker.stopping:
            return
        if worker.ready and worker.attempt is None and not worker.retiring:
            worker.stop(self._grace, framing.STOP)
        else:
            worker.terminate(self._grace)

    def _receive(self, worker: Worker) -> bytes | None:
        """The worker's next message, or None once its pipe is closed (it is gone)."""
        try:
            return worker.conn.recv_bytes()
        except (EOFError, OSError):  # its sentinel says how it ended
            self._unregister(worker.conn.fileno())
            return None

    def _on_message(self, worker: Worker, data: bytes | None) -> None:
        if data is None:
            return
        if not worker.ready:
            self._on_hello(worker, framing.unpack_hello(data))
            return
        with self._lock:
            attempt, worker.attempt = worker.attempt, None
            worker.runs += 1
            if self._max_tasks is not None and worker.runs >= self._max_tasks:
                worker.retiring = True
            following = self._next(worker)
        if following is not None:  # the next run first: the worker works while we report
            self._dispatch(worker, *following, first=False)
        if attempt is not None:
            report_result(attempt, data, self._memory_limit)

    def _on_hello(self, worker: Worker, hello: framing.Hello) -> None:
        if hello.status != framing.READY:
            worker.failed = True
            cause: BaseException | None = None
            if hello.error is not None:
                with contextlib.suppress(Exception):
                    cause = loads(hello.error)
            if cause is not None and hello.traceback and hasattr(cause, "add_note"):
                cause.add_note(f"In the worker process:\n{hello.traceback}")
            error = BackendUnavailable(
                f"Runner {self._name!r} cannot start its workers: {hello.problem}."
            )
            error.__cause__ = cause
            self._start_failed(error, again=True)
            return
        worker.ready = True
        with self._lock:
            following = self._next(worker)
            ready = sum(w.ready for w in self._workers)
        self._start.ready(ready)
        if following is not None:
            self._dispatch(worker, *following, first=False)

    def _on_exit(self, worker: Worker) -> None:
        while worker.has_message():  # what it sent before it ended
            data = self._receive(worker)
            if data is None:
                break
            self._on_message(worker, data)
        self._unregister(worker.conn.fileno())
        self._unregister(worker.sentinel)
        code, pid = worker.exit_code(), worker.pid
        lost = worker.outlived_its_watch(code)
        if lost:  # the forkserver died: nothing would tell when this worker ends, so end it
            worker.kill()
        worker.close()
        with self._lock:
            self._workers.discard(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            attempt, worker.attempt = worker.attempt, None
            if attempt is not None and worker.unsent is not None and not attempt.finished:
                self._queue.appendleft((attempt, worker.unsent))  # it never reached the worker
                attempt = None
            replace = not self._closing and self._broken is None
        if attempt is not None and not attempt.finished:
            report_death(attempt, pid, code, self._memory_limit, self._oom, lost=lost)
        elif not worker.ready and not worker.failed and not worker.stopping:
            if code == EXIT_UNGUARDED:
                self._start_failed(unguarded_error(main_script()), again=True)
            else:
                problem = f"a worker process {describe_exit(code)} before it was ready"
                error = BackendUnavailable(
                    f"Runner {self._name!r} cannot start its workers: {problem} (see its "
                    "output above)."
                )
                self._start_failed(error, again=False)
        if replace and self._broken is None and not self._start.failed_to_start:
            try:
                self._add_worker()
            except Exception as exc:
                error = BackendUnavailable(
                    f"Runner {self._name!r} cannot start a worker process: "
                    f"{type(exc).__name__}: {exc}."
                )
                self._start_failed(error, again=False)

    def _start_failed(self, error: ConveyorError, *, again: bool) -> None:
        if self._start.failed(error, again=again) and not self._start.failed_to_start:
            self._give_up(str(error))

    def _give_up(self, message: str, running: bool = False) -> None:
        """
        No more workers can be started: queued and later runs (and, with ``running``, those
        the workers run) end CRASHED with ``message``.
        """
        with self._lock:
            if self._broken is None:
                logger.error("%s Its queued and later runs crash.", message)
            self._broken = message
            queued = [a for a, _ in self._queue]
            self._queue.clear()
            if running:
                queued += [w.attempt for w in self._workers if w.attempt is not None]
        for attempt in queued:
            if not attempt.finished:
                attempt.crash(message, reason=CrashReason.BACKEND_ERROR)

    def _unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(fd)
