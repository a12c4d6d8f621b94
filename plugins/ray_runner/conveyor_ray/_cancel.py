"""
Cancelling Ray tasks: the handle of a run handed to Ray, and the :class:`Canceller` that sends
``ray.cancel`` for batches of runs, through the session's cancel helper actor.

Why a helper: Ray 2.60 runs a driver's own ``ray.cancel`` on the calling thread, while its event
loop thread handles the replies of tasks that finish. A cancel that lands after a finishing
task's reply was taken but before Ray recorded its completion makes Ray fail the task itself,
and then abort the whole driver on the completion (``task_manager.cc``: "Check failed: it !=
submissible_tasks_.end() Tried to complete task that was not pending"). A flow ending early with
thousands of runs in flight sent thousands of cancels while runs finished by the hundred, and
aborted the driver in a third of the tries. A ``ray.cancel`` from another process (the helper)
is forwarded to this driver, which runs it on that very event loop, between replies: it cannot
land inside one. See :class:`~conveyor_ray._worker.CancelHelper`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["Canceller", "Handle"]

logger = logging.getLogger("conveyor.ray")

# A stopping runner waits for its cancelled tasks in slices this long, so signals get through.
_STOP_SLICE = 0.1

_order = itertools.count()


class Handle:
    """The Ray side of one attempt: its two return refs, its order, and what cancel asked for."""

    __slots__ = ("cancel_requested", "cancel_sent", "force_at", "outcome", "seq", "value")

    def __init__(self) -> None:
        self.seq = next(_order)  # the order in which Ray got the runs: it starts the oldest first
        self.outcome: Any = None
        self.value: Any = None
        self.cancel_requested = False
        self.cancel_sent = False
        self.force_at: float | None = None


class Canceller:
    """
    Sends the ``ray.cancel`` of batches of runs: through the session's cancel helper actor
    (``helper``) once it is up, directly while it is not (a nested flow has none, and a helper
    that died is not restarted); a helper call that failed is sent again directly.
    """

    __slots__ = ("_calls", "_helper", "_probe", "_ray")

    def __init__(self, ray: Any, helper: Any) -> None:
        self._ray = ray
        self._helper = helper
        self._probe: Any = helper.ready.remote() if helper is not None else None
        self._calls: list[tuple[Any, list[Any], bool]] = []

    def send(self, handles: Sequence[Handle], *, force: bool) -> list[Handle]:
        """
        Cancel the Ray tasks of ``handles`` that Ray has not finished (``force``: kill their
        workers), oldest first, so that queued runs go before Ray can start them; return the
        handles cancelled. Never raises.
        """
        ready = self._finished([h.outcome for h in handles if h.outcome is not None])
        todo = sorted(
            (h for h in handles if h.outcome is not None and h.outcome not in ready),
            key=lambda h: h.seq,
        )
        refs = [h.outcome for h in todo]
        if not refs:
            return []
        for handle in todo:
            handle.cancel_sent = True
        if self._helper_up():
            try:
                self._calls.append((self._helper.cancel.remote(refs, force), refs, force))
                return todo
            except Exception:
                logger.debug(
                    "The cancel helper refused a batch; cancelling directly.", exc_info=True
                )
        self._direct(refs, force)
        return todo

    def stop(self, handles: Sequence[Handle], grace: float) -> None:
        """
        Cancel the runs of ``handles`` still in flight (a stopping runner's), and kill what
        does not stop within ``grace`` seconds; nothing if Ray is shut down.
        """
        ray = self._ray
        refs = [h.outcome for h in handles if h.outcome is not None]
        if not refs or not ray.is_initialized():
            return
        self.send([h for h in handles if not h.cancel_sent], force=False)
        # Wait in short slices: a signal's handler runs only between them (ray.wait blocks in
        # C++), so a second Ctrl-C during the grace period interrupts the stop at once.
        deadline = time.monotonic() + grace
        pending = refs
        while pending and (remaining := deadline - time.monotonic()) > 0:
            try:
                _ready, pending = ray.wait(
                    pending,
                    num_returns=len(pending),
                    timeout=min(remaining, _STOP_SLICE),
                    fetch_local=False,
                )
            except Exception:  # the cluster went away meanwhile: nothing left to cancel
                return
        if pending:
            still = set(pending)
            self.send([h for h in handles if h.outcome in still], force=True)

    def check(self) -> None:
        """Send again, directly, the batches of helper calls that failed."""
        if not self._calls:
            return
        ray = self._ray
        try:
            done, _ = ray.wait([c[0] for c in self._calls], num_returns=len(self._calls), timeout=0)
        except BaseException:
            return  # Ray is going away; the health check reports it
        finished = set(done)
        calls, self._calls = self._calls, []
        for call, refs, force in calls:
            if call not in finished:
                self._calls.append((call, refs, force))
                continue
            try:
                ray.get(call, timeout=0)
            except BaseException:
                logger.info("conveyor's Ray cancel helper failed; cancelling directly.")
                self._helper = None
                self._direct(refs, force)

    def _helper_up(self) -> bool:
        probe = self._probe
        if self._helper is None or probe is None:
            return self._helper is not None
        try:
            ready, _ = self._ray.wait([probe], timeout=0)
            if not ready:
                return False
            self._ray.get(probe, timeout=0)
        except BaseException:
            self._helper = None  # it could not start: cancel directly from now on
            return False
        self._probe = None
        return True

    def _finished(self, refs: list[Any]) -> set[Any]:
        if not refs:
            return set()
        try:
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        except BaseException:
            return set()
        return set(ready)

    def _direct(self, refs: list[Any], force: bool) -> None:
        for ref in refs:
            try:
                self._ray.cancel(ref, force=force)
            except Exception:
                logger.debug("ray.cancel(force=%s) raised.", force, exc_info=True)
