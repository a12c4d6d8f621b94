"""
What runs on the Dask workers and scheduler: the task wrapper around conveyor's envelope, and
the scheduler plugin that stops Dask from recomputing a completed run.

Imported on workers (by reference, as ``conveyor_dask._worker.run_task``) and by the runner when
it starts; it imports ``distributed`` only inside functions.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from conveyor.runners.remote import Outcome, dumps, run_packed

__all__ = ["KEY_PREFIX", "TaskOutcome", "is_executing", "run_task"]

#: Every Dask key conveyor submits starts with this.
KEY_PREFIX = "conveyor-"

logger = logging.getLogger("conveyor.dask")

_executing: dict[str, threading.Thread] = {}
_lock = threading.Lock()


class TaskOutcome(Exception):
    """
    Raised by :func:`run_task` when the run did not return a value, so the Dask task errs and
    the driver fetches only this small outcome (never a value). Not the user's exception:
    ``outcome`` carries that, pickled.
    """

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome

    def __str__(self) -> str:
        o = self.outcome
        return f"conveyor run ended {o.status} ({o.reason or o.error_type}): {o.error_message}"

    def __repr__(self) -> str:
        return f"TaskOutcome({self})"


def _publish(topic: str | None, msg: Any) -> None:
    if not topic:
        return
    from distributed import get_worker

    try:
        get_worker().log_event(topic, msg)
    except Exception:  # pragma: no cover - not on a worker, or the worker is closing
        logger.debug("Could not publish %r on %s", msg[:2], topic, exc_info=True)


def _safe_records(records: tuple[dict[str, Any], ...]) -> bytes:
    try:
        return dumps(records)
    except Exception:
        plain = (str, int, float, bool, type(None))
        cleaned = tuple(
            {k: (v if isinstance(v, plain) else repr(v)) for k, v in r.items()} for r in records
        )
        return dumps(cleaned)


def run_task(payload: bytes, topic: str | None, key: str, *deps: Any) -> Any:
    """
    Run one conveyor attempt on a worker; return its value, or raise :class:`TaskOutcome`.

    Publishes ``("start", key, worker)`` on ``topic`` when the body starts, so the driver knows
    which runs a dying worker really ran, and the run's log records (``("logs", key, bytes)``)
    when it returned a value (a failed run carries them in its :class:`TaskOutcome`).
    """
    from distributed import get_worker

    with _lock:
        _executing[key] = threading.current_thread()
    try:
        worker = get_worker()
    except Exception:  # pragma: no cover - executed outside a worker
        worker = None
    if worker is not None and topic:
        # Announce the start only for a body still running after START_GRACE seconds: a run
        # that finishes sooner is reported by its result, and the event costs a round trip
        # per run. A worker that dies within the grace period was (on 1-thread workers) killed
        # by this very run, which crashed itself and may run again.
        loop = worker.loop
        address = worker.address
        loop.add_callback(
            lambda: loop.call_later(START_GRACE, _announce_if_running, worker, topic, key, address)
        )
    try:
        outcome, value = run_packed(payload, *deps)
    finally:
        with _lock:
            _executing.pop(key, None)
    if outcome.status != "ok":
        raise TaskOutcome(outcome)
    if outcome.records:
        _publish(topic, ("logs", key, _safe_records(outcome.records)))
    return value


#: Seconds a body runs before the driver is told that it started.
START_GRACE = 0.05


def _announce_if_running(worker: Any, topic: str, key: str, address: str) -> None:
    with _lock:
        running = key in _executing
    if running:
        try:
            worker.log_event(topic, ("start", key, address))
        except Exception:  # pragma: no cover - the worker is closing
            logger.debug("Could not publish the start of %s", key, exc_info=True)


def is_executing(key: str) -> int:
    """This worker process's pid if it is running the body of ``key`` now, else 0 (for ``client.run``)."""
    import os

    with _lock:
        return os.getpid() if key in _executing else 0


GUARD_NAME = "conveyor-lost-result-guard"


def has_guard(dask_scheduler: Any) -> bool:
    """Whether the scheduler has conveyor's guard plugin (for ``client.run_on_scheduler``)."""
    return GUARD_NAME in dask_scheduler.plugins


def guard_plugin() -> Any:
    """A scheduler plugin that turns a lost completed conveyor result into a lost key."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class LostResultGuard(SchedulerPlugin):
        name = GUARD_NAME

        def __init__(self) -> None:
            self.scheduler: Any = None

        async def start(self, scheduler: Any) -> None:
            self.scheduler = scheduler

        def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
            # memory -> released happens when the last copy of a result is lost (worker death
            # or restart); Dask would then recompute it, running the task body again. Mark it
            # as having lost its inputs instead, so the scheduler forgets it and the driver's
            # future reports it lost.
            if start != "memory" or finish != "released":
                return
            if not (isinstance(key, str) and key.startswith(KEY_PREFIX)):
                return
            ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
            if ts is not None:
                ts.has_lost_dependencies = True

    return LostResultGuard()
