"""
What runs on the Dask workers and scheduler: the task wrapper around conveyor's envelope, and
the scheduler plugin that stops Dask from recomputing a completed run.

Imported on workers (by reference, as ``conveyor_dask._worker.run_task``) and by the runner when
it starts; it imports ``distributed`` only inside functions.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any

from conveyor.runners.remote import Outcome, dumps, run_packed

__all__ = ["KEY_PREFIX", "TaskOutcome", "is_executing", "run_task", "starts_topic"]

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

    Before the body runs, logs ``(key, worker)`` under :func:`starts_topic` and hands the
    worker's buffered messages to the OS (:func:`_announce_start`), so the scheduler knows of
    every run this worker finished and of the one it starts even if the body kills the
    process. Publishes the run's log records on ``topic`` (``("logs", key, bytes)``) when it
    returned a value (a failed run carries them in its :class:`TaskOutcome`).
    """
    from distributed import get_worker

    with _lock:
        _executing[key] = threading.current_thread()
    try:
        worker = get_worker()
    except Exception:  # pragma: no cover - executed outside a worker
        worker = None
    if worker is not None and topic:
        _announce_start(worker, starts_topic(topic, worker.address), key)
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


def starts_topic(topic: str, address: str) -> str:
    """
    The event topic under which the worker at ``address`` logs the runs it starts. Nobody
    subscribes to it: the scheduler keeps its last events (1,000 by default), and the driver
    reads them only when that worker died. One topic per worker, so the start of a run that
    is still running there cannot be pushed out by the starts of other workers.
    """
    return f"{topic}-starts-{address}"


#: How long a body waits for the worker to send its start (and what it sent before).
FLUSH_LIMIT = 1.0


def _announce_start(worker: Any, topic: str, key: str) -> None:
    """
    Log that ``key`` starts on ``worker``, and wait (up to FLUSH_LIMIT) until the worker's
    batched stream to the scheduler has handed that event, and every message before it, to the
    OS. Without this, a body that kills its process within the stream's batching interval
    takes with it the "task-finished" of the run before it, which then counts as killed.
    """
    sent = threading.Event()
    msg = {"op": "log-event", "topic": topic, "msg": (key, worker.address)}

    def announce() -> None:
        try:
            worker.batched_send(msg)
            stream = worker.batched_stream
            stream.next_deadline = None  # send now, not at the end of the batching interval
            stream.waker.set()
        except Exception:  # pragma: no cover - the worker is closing
            sent.set()
            return
        worker.loop.add_callback(check, stream, 0)

    def written(stream: Any) -> bool:
        # The stream logs each batch once its write completed, i.e. the OS has the bytes.
        log = stream.recent_message_log
        for batch in itertools.islice(reversed(log), 4):
            if isinstance(batch, list) and any(m is msg for m in batch):
                return True
        return False

    def check(stream: Any, hops: int) -> None:
        comm = stream.comm
        if comm is None or comm.closed() or hops >= 1000 or written(stream):
            sent.set()
        elif hops < 20:  # the stream sends within the loop's next turns
            worker.loop.add_callback(check, stream, hops + 1)
        else:  # a write is still in progress
            worker.loop.call_later(0.001, check, stream, hops + 1)

    worker.loop.add_callback(announce)
    sent.wait(FLUSH_LIMIT)


def is_executing(key: str) -> int:
    """This worker process's pid if it is running the body of ``key`` now, else 0 (for ``client.run``)."""
    import os

    with _lock:
        return os.getpid() if key in _executing else 0


GUARD_NAME = "conveyor-lost-result-guard"

#: The event topic under which the guard logs the key of each completed run whose result it
#: saw lost.
LOST_RESULTS_TOPIC = "conveyor-lost-results"


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
                # The driver may not have heard yet that the run finished: tell it.
                self.scheduler.log_event(LOST_RESULTS_TOPIC, key)

    return LostResultGuard()
