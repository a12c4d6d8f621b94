"""
The dispatcher of a started Ray runner: it owns the runs in flight, and its thread reports each
one when Ray has finished it, sends the cancels of runs in batches (see :mod:`~conveyor_ray._cancel`
for why never one by one from the caller's thread), kills the workers of cancelled runs that do
not stop, and tells the loss of the cluster from the death of a worker.
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import threading
import time
from typing import Any

from conveyor import CrashReason
from conveyor.runners import Attempt
from conveyor_ray._cancel import Canceller, Handle
from conveyor_ray._internals import on_completed
from conveyor_ray._pacing import POLL_WINDOW, WATCH_LIMIT, Pace
from conveyor_ray._report import HeldDeaths, crash_quietly, report
from conveyor_ray._session import Session, gone, mark_lost

__all__ = ["HEALTH_INTERVAL", "Dispatcher"]

logger = logging.getLogger("conveyor.ray")

# How often the dispatcher checks that the cluster is still there while runs are in flight.
HEALTH_INTERVAL = 1.0
# How long fetching the outcome of a run that Ray reported finished may take.
_FETCH_TIMEOUT = 30.0

_STOP = object()
_WAKE = object()


class Dispatcher:
    """
    The runs in flight of one started Ray runner, and the thread that reports them.

    Its tables, under one lock: ``_inflight``, the handle of every attempt handed to Ray;
    ``_watched`` (waited on in Ray) and ``_polled`` (polled in batches), attempts by their
    outcome ref, while a run in neither is reported by a Ray callback through the queue;
    ``_cancels``, the attempts whose cancel the thread sends next; and ``_forcing``, the
    cancelled attempts whose worker is killed at their ``force_at``. Only its thread touches
    ``_held`` (worker deaths waiting to be told from the cluster's loss) and the canceller until
    :meth:`stop` has joined it.
    """

    __slots__ = (
        "_canceller",
        "_cancels",
        "_forcing",
        "_grace",
        "_held",
        "_inflight",
        "_lock",
        "_lost",
        "_next_health",
        "_polled",
        "_queue",
        "_ray",
        "_session",
        "_thread",
        "_watched",
    )

    def __init__(
        self, ray: Any, session: Session, cancel_grace_seconds: float, helper: Any
    ) -> None:
        self._ray = ray
        self._session = session
        self._grace = cancel_grace_seconds
        self._canceller = Canceller(ray, helper)
        self._lock = threading.Lock()
        self._inflight: dict[Attempt, Handle] = {}
        self._watched: dict[Any, Attempt] = {}
        self._polled: dict[Any, Attempt] = {}
        self._cancels: list[tuple[Attempt, Handle]] = []
        self._forcing: set[Attempt] = set()
        self._held = HeldDeaths()
        self._lost: str | None = None
        self._next_health = time.monotonic() + HEALTH_INTERVAL
        self._queue: queue.SimpleQueue[Any] | None = queue.SimpleQueue()
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name="conveyor-ray-dispatcher", daemon=True
        )

    def start(self) -> None:
        """Start the dispatcher's thread."""
        assert self._thread is not None
        self._thread.start()

    # -- called by the runner ---------------------------------------------------------------

    def track(self, attempt: Attempt, handle: Handle, outcome_ref: Any, value_ref: Any) -> None:
        """Report ``attempt`` once Ray has finished it: Ray returned ``outcome_ref, value_ref``."""
        with self._lock:
            handle.outcome, handle.value = outcome_ref, value_ref
            inflight = self._inflight
            wake = not inflight  # the dispatcher may be waiting on its queue alone
            inflight[attempt] = handle
            polled = self._polled
            called = False
            if polled or len(inflight) > WATCH_LIMIT:
                wake = wake or not polled  # the dispatcher starts polling
                polled[outcome_ref] = attempt
            elif threading.current_thread() is self._thread:
                self._watched[outcome_ref] = attempt
            else:
                called = True
            if handle.cancel_requested:  # cancelled while it was being submitted
                self._cancels.append((attempt, handle))
                wake = True
        q = self._queue
        if wake and q is not None:
            q.put(_WAKE)
        if called:
            on_completed(outcome_ref, functools.partial(self._completed, attempt))

    def cancel(self, attempt: Attempt, handle: Handle) -> None:
        """
        Have the thread cancel the attempt's Ray task with the next batch, and kill its worker
        if it has not stopped after the grace.
        """
        with self._lock:
            handle.cancel_requested = True
            if handle.outcome is None or attempt not in self._inflight:
                return  # submit is under way (track queues it), or Ray already finished it
            self._cancels.append((attempt, handle))
        q = self._queue
        if q is not None:
            q.put(_WAKE)

    def lost_reason(self, check_gcs: bool = False) -> str | None:
        """
        Why the cluster is gone (asking its GCS and this node's raylet with ``check_gcs``), or
        None while it is there.
        """
        return self._lost or gone(self._session, self._ray, probe=check_gcs)

    def on_lost(self, why: str) -> None:
        """The cluster is gone: say so once, and crash every run in flight."""
        if self._lost is None:
            self._lost = why
            logger.error("conveyor lost its Ray cluster: %s.", why)
        mark_lost(self._session, why)
        for attempt, _handle in self._take_inflight():
            crash_quietly(
                attempt,
                f"The Ray cluster was lost while {attempt.name!r} was in flight: {why}.",
                reason=CrashReason.BACKEND_LOST,
            )

    def stop(self) -> None:
        """
        Stop the thread, then end what is in flight: held worker deaths as they are, the other
        runs cancelled in Ray (their workers killed after the grace) and CRASHED
        (runner-stopped). A second Ctrl-C during the grace kills what is left at once.
        """
        q, self._queue = self._queue, None
        thread, self._thread = self._thread, None
        left: list[tuple[Attempt, Handle]] = []
        try:
            if q is not None:
                q.put(_STOP)
            if thread is not None:
                thread.join(10.0)
            self._held.crash_all()
            left = self._take_inflight()
            if not self._lost:
                self._canceller.stop([h for _a, h in left], self._grace)
        except BaseException:
            # A second Ctrl-C cut the stop short: kill what is left, without waiting for it.
            left += self._take_inflight()
            self._canceller.send([h for _a, h in left], force=True)
            raise
        finally:
            for attempt, _handle in left:
                if not attempt.finished:
                    attempt.crash(
                        f"Runner 'ray' stopped while {attempt.name!r} was in flight; its Ray "
                        "task was cancelled.",
                        reason=CrashReason.RUNNER_STOPPED,
                    )

    # -- the tables -------------------------------------------------------------------------

    def _take_inflight(self) -> list[tuple[Attempt, Handle]]:
        with self._lock:
            left = list(self._inflight.items())
            self._inflight.clear()
            self._watched.clear()
            self._polled.clear()
            self._cancels.clear()
            self._forcing.clear()
        return left

    def _send_cancels(self) -> None:
        """Cancel the requested runs in one batch; kill the workers of those left at the grace."""
        with self._lock:
            batch = [(a, h) for a, h in self._cancels if a in self._inflight and not h.cancel_sent]
            self._cancels.clear()
        sent = {id(h) for h in self._canceller.send([h for _a, h in batch], force=False)}
        force_at = time.monotonic() + self._grace
        with self._lock:
            for attempt, handle in batch:
                if id(handle) in sent and attempt in self._inflight:
                    handle.force_at = force_at
                    self._forcing.add(attempt)

    def _completed(self, attempt: Attempt, data: Any) -> None:
        # Runs on a Ray thread: hand over, do the work on the dispatcher.
        q = self._queue
        if q is not None:
            q.put((attempt, data))

    def _finish(self, attempt: Attempt, data: Any) -> None:
        with self._lock:
            handle = self._inflight.pop(attempt, None)
            if handle is None:  # already crashed as lost, or stopped
                return
            self._watched.pop(handle.outcome, None)
            self._polled.pop(handle.outcome, None)
            self._forcing.discard(attempt)
        if type(data) is list and len(data) == 4:  # the worker's place rides along: take it off
            where = data.pop()
            if attempt.where is None and attempt.wants_where:
                attempt.where = where
        try:
            report(
                attempt,
                handle.value,
                data,
                ray=self._ray,
                session=self._session,
                cluster=self,
                held=self._held,
            )
        except Exception as exc:  # a bug here must not leave the run in flight for ever
            logger.exception("conveyor-ray could not report %s.", attempt)
            if not attempt.finished:
                crash_quietly(
                    attempt,
                    f"conveyor-ray could not report the outcome of {attempt.name!r}: "
                    f"{type(exc).__name__}: {exc}",
                    reason=CrashReason.BACKEND_ERROR,
                    exc=exc,
                )

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        assert q is not None
        pace = Pace()
        while True:
            timeout = pace.timeout(self._next_wakeup())
            with self._lock:
                watched = list(self._watched)
            items: list[Any] = []
            step = pace.watch_step(len(watched), timeout)
            found = self._watch(watched, step) if watched else None
            pace.watched(found)
            try:
                if found is None:  # nothing to wait on in Ray, or Ray refused: the queue
                    items.append(q.get(timeout=step if watched else timeout))
                while True:
                    items.append(q.get_nowait())
            except queue.Empty:
                pass
            for item in items:
                if item is _STOP:
                    return
                if type(item) is tuple:  # a Ray callback's run
                    self._finish(*item)
            if self._cancels:
                self._send_cancels()
            now = time.monotonic()
            if pace.poll_due(bool(self._polled), now):
                done, full = self._harvest()
                pace.polled(now, done, full, len(self._polled))
            if self._housekeeping_due():
                self._housekeeping()

    def _watch(self, refs: list[Any], step: float) -> bool | None:
        """
        Wait up to ``step`` seconds in Ray for one of the watched runs to finish, and report
        every one that has; whether any had. None if Ray refused the wait (it is going away; the
        health check reports it).
        """
        ray = self._ray
        try:
            ready, rest = ray.wait(refs, num_returns=1, timeout=step, fetch_local=False)
            if ready and rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)
                ready += more
        except BaseException:
            return None
        if ready:
            self._report_ready(ready, self._watched)
        return bool(ready)

    def _harvest(self) -> tuple[int, bool]:
        """
        Report the polled runs that have finished, fetching their outcomes in one batch. The
        oldest POLL_WINDOW runs are asked first; all of them only when none of those finished.
        Return how many were reported, and whether all that were asked had finished.
        """
        with self._lock:
            polled = self._polled
            window = list(itertools.islice(polled, POLL_WINDOW))
            rest = len(polled) > len(window)
        ready = self._ready(window)
        if not ready and rest:
            with self._lock:
                window = list(self._polled)
            ready = self._ready(window)
        if not ready:
            return 0, False
        self._report_ready(ready, self._polled)
        return len(ready), len(ready) == len(window)

    def _report_ready(self, ready: list[Any], table: dict[Any, Attempt]) -> None:
        """Fetch the outcomes of the finished runs ``ready`` (keys of ``table``), and report them."""
        try:
            outcomes = self._ray.get(ready, timeout=_FETCH_TIMEOUT)
        except BaseException:  # one of them holds an error: fetch them one by one
            outcomes = [self._fetch_outcome(ref) for ref in ready]
        with self._lock:
            attempts = [table.get(ref) for ref in ready]
        for attempt, data in zip(attempts, outcomes, strict=True):
            if attempt is not None:
                self._finish(attempt, data)

    def _ready(self, refs: list[Any]) -> list[Any]:
        if not refs:
            return []
        try:
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        except BaseException:
            return []  # Ray is going away; the health check reports it
        return list(ready)

    def _fetch_outcome(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref, timeout=_FETCH_TIMEOUT)
        except BaseException as exc:  # SystemExit, if Ray shuts down meanwhile
            return exc

    # -- timers: force-kill, health, held deaths ---------------------------------------------

    def _next_wakeup(self) -> float | None:
        with self._lock:
            if not self._inflight and not self._held:
                return None
            due = [self._next_health]
            due.extend(
                h.force_at for a in self._forcing if (h := self._inflight.get(a)) and h.force_at
            )
        if self._held:
            due.append(self._held.next_due())
        return max(0.0, min(due) - time.monotonic())

    def _housekeeping_due(self) -> bool:
        if not self._inflight and not self._held:
            return False
        wait = self._next_wakeup()
        return wait is not None and wait <= 0.0

    def _housekeeping(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = []
            for attempt in list(self._forcing):
                handle = self._inflight.get(attempt)
                if handle is None or handle.force_at is None:
                    self._forcing.discard(attempt)
                elif handle.force_at <= now:
                    handle.force_at = None
                    self._forcing.discard(attempt)
                    due.append((attempt, handle))
        killed = {id(h) for h in self._canceller.send([h for _a, h in due], force=True)}
        for attempt, handle in due:
            if id(handle) in killed:
                logger.info(
                    "%s did not stop within %g s of its cancel; killing its Ray worker.",
                    attempt.name,
                    self._grace,
                )
        lost = None
        if now >= self._next_health:
            self._next_health = now + HEALTH_INTERVAL
            self._canceller.check()
            lost = self.lost_reason(check_gcs=True)
            if lost is not None:
                self.on_lost(lost)
        self._held.settle(now, lost)
