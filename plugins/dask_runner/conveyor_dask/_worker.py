"""
What runs on the Dask workers: the task wrapper around conveyor's envelope, the announcement
of each run's start, and the probe that tells where a run's body is executing.

Imported on workers (by reference, as ``conveyor_dask._worker.run_task``) and by the runner when
it starts; it imports ``distributed`` only inside functions.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from conveyor import CrashReason
from conveyor.runners.remote import Outcome, dumps, run_packed
from conveyor_dask import _internals
from conveyor_dask._events import inline_value, is_run_key, starts_topic

__all__ = ["FLUSH_LIMIT", "TaskOutcome", "cancel_key", "is_executing", "run_task"]

logger = logging.getLogger("conveyor.dask")

_executing: dict[str, threading.Thread] = {}
#: Keys the driver cancelled before their body started here (oldest first, at most _CANCELLED_KEPT).
_cancelled: dict[str, None] = {}
_CANCELLED_KEPT = 10_000
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


class _QuietOutcomes(logging.Filter):
    """
    Drops distributed's "Compute Failed" error of a conveyor task that ended by raising
    :class:`TaskOutcome` (conveyor reports that run itself); any other worker error passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            isinstance(record.msg, str)
            and record.msg.startswith("Compute Failed")
            and isinstance(args, tuple)
            and len(args) >= 4
            and is_run_key(str(args[0]))
            and str(args[3]).startswith("TaskOutcome(")
        )


_quiet: list[_QuietOutcomes] = []


def _quiet_outcomes() -> None:
    """Install :class:`_QuietOutcomes` on distributed's worker logger, once per process."""
    if not _quiet:
        with _lock:
            if not _quiet:
                _quiet.append(_QuietOutcomes())
                logging.getLogger("distributed.worker").addFilter(_quiet[0])


def _publish(topic: str | None, msg: Any) -> None:
    if not topic:
        return
    from distributed import get_worker  # defers importing distributed to the worker

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

    Before the body runs, logs ``(key, worker)`` under
    :func:`~conveyor_dask._events.starts_topic` and hands the worker's buffered messages to the
    OS (:func:`_announce_start`), so the scheduler knows of every run this worker finished and
    of the one it starts even if the body kills the process. Publishes the run's log records
    on ``topic`` (``("logs", key, bytes)``) when it returned a value (a failed run carries them
    in its :class:`TaskOutcome`), and a small value itself (``("value", key, value)``, see
    :func:`~conveyor_dask._events.inline_value`), before the run's end reaches the scheduler.
    """
    from distributed import get_worker  # defers importing distributed to the worker

    _quiet_outcomes()
    with _lock:
        if _cancelled.pop(key, 0) is None:  # cancelled before it started: never run it
            msg = "cancelled before it started"
            raise TaskOutcome(Outcome("crash", reason=CrashReason.BACKEND_ERROR, error_message=msg))
        _executing[key] = threading.current_thread()
    try:
        worker = get_worker()
    except Exception:  # pragma: no cover - executed outside a worker
        worker = None
    if worker is not None and topic:
        _announce_start(worker, [starts_topic(topic, worker.address), topic], key)
    try:
        outcome, value = run_packed(payload, *deps)
    finally:
        with _lock:
            _executing.pop(key, None)
    if outcome.status != "ok":
        raise TaskOutcome(outcome)
    if outcome.records:
        _publish(topic, ("logs", key, _safe_records(outcome.records)))
    if inline_value(value):
        _publish(topic, ("value", key, value))
    return value


#: How long a body waits for the worker to send its start (and what it sent before).
FLUSH_LIMIT = 1.0


def _announce_start(worker: Any, topics: list[str], key: str) -> bool:
    """
    Log that ``key`` starts on ``worker`` (under each of ``topics``: the runner's driver marks
    the run Running when it hears it), and wait (up to FLUSH_LIMIT) until the worker's
    batched stream to the scheduler has handed that event, and every message before it, to the
    OS. Without this, a body that kills its process within the stream's batching interval
    takes with it the "task-finished" of the run before it, which then counts as killed.

    Returns whether it saw the write complete (False: the time ran out, or the stream closed).
    """
    sent = threading.Event()
    written = [False]
    msg = {"op": "log-event", "topic": topics, "msg": (key, worker.address)}
    loop = _internals.worker_loop(worker)

    def announce() -> None:
        try:
            stream = _internals.send_now(worker, msg)
        except Exception:  # pragma: no cover - the worker is closing
            sent.set()
            return
        loop.add_callback(check, stream, 0)

    def check(stream: Any, hops: int) -> None:
        # The stream logs each batch once its write completed, i.e. the OS has the bytes.
        if _internals.was_written(stream, msg):
            written[0] = True
            sent.set()
        elif _internals.stream_closed(stream) or hops >= 1000:
            sent.set()
        elif hops < 20:  # the stream sends within the loop's next turns
            loop.add_callback(check, stream, hops + 1)
        else:  # a write is still in progress
            loop.call_later(0.001, check, stream, hops + 1)

    loop.add_callback(announce)
    sent.wait(FLUSH_LIMIT)
    return written[0]


def cancel_key(key: str) -> int:
    """
    Note that ``key`` is cancelled, so its body never starts in this process; return this
    process's pid if the body is running already, else 0 (for ``client.run``). Under the lock
    :func:`run_task` takes to start a body, so the answer is exact.
    """
    with _lock:
        if key in _executing:
            return os.getpid()
        _cancelled[key] = None
        while len(_cancelled) > _CANCELLED_KEPT:
            del _cancelled[next(iter(_cancelled))]
        return 0


def is_executing(key: str) -> int:
    """This worker process's pid if it is running the body of ``key`` now, else 0 (for ``client.run``)."""
    with _lock:
        return os.getpid() if key in _executing else 0
