"""
The names the driver, the workers and the scheduler share (Dask keys, event topics), and the
driver's readers of the scheduler's event log.

The scheduler keeps the last events of every topic; the driver reads them only to diagnose a
run whose worker died or whose result went missing, never on the way of a run that went well.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from conveyor_dask import _internals

__all__ = [
    "KEY_MARK",
    "LOST_RESULTS_TOPIC",
    "SMALL_TYPES",
    "inline_value",
    "is_run_key",
    "killed_for_memory",
    "result_was_lost",
    "run_key",
    "runner_topic",
    "started_there",
    "starts_topic",
]

logger = logging.getLogger("conveyor.dask")

#: Every Dask key conveyor submits ends with this (see :func:`run_key`).
KEY_MARK = "-conveyor"


def run_key(task_name: str) -> str:
    """
    A new Dask key for a run of ``task_name``: ``<task name>-<32 hex digits>-conveyor``, so
    that ``dask.utils.key_split`` (the dashboard's task stream, the scheduler's task groups)
    names the task.
    """
    return f"{task_name}-{os.urandom(16).hex()}{KEY_MARK}"


def is_run_key(key: object) -> bool:
    """Whether ``key`` is the Dask key of a conveyor run."""
    return isinstance(key, str) and key.endswith(KEY_MARK)


#: The event topic under which the scheduler's guard logs the key of each completed run whose
#: result it saw lost.
LOST_RESULTS_TOPIC = "conveyor-lost-results"


#: Results of these types (the scheduler tells the client a result's type) have no side effects
#: when unpickled, and cost the driver less than the Dask future that would hold them.
SMALL_TYPES = frozenset({bool, int, float, complex})

_INT_RANGE = range(-(2**63), 2**63)  # what msgpack carries in an event without pickling


def inline_value(value: Any) -> bool:
    """
    Whether a run's ``value`` travels to the driver with the run's end (an event of the
    runner's topic, ``("value", key, value)``), so that its ``result()`` costs no round trip.
    """
    kind = type(value)
    return kind is float or kind is bool or (kind is int and value in _INT_RANGE)


def runner_topic() -> str:
    """A new topic for one started runner: its workers publish the runs' log records on it."""
    return f"conveyor-runner-{os.urandom(16).hex()}"


def starts_topic(topic: str, address: str) -> str:
    """
    The event topic under which the worker at ``address`` logs the runs it starts. Nobody
    subscribes to it: the scheduler keeps its last events (1,000 by default), and the driver
    reads them only when that worker died. One topic per worker, so the start of a run that
    is still running there cannot be pushed out by the starts of other workers.
    """
    return f"{topic}-starts-{address}"


def started_there(client: Any, topic: str | None, key: str, address: str | None) -> bool:
    """
    Whether the worker at ``address`` logged the start of ``key``'s body, from the scheduler's
    last events of that worker's starts topic (see ``conveyor_dask._worker.run_task``).
    """
    if address is None or topic is None:
        return False
    try:
        events = client.get_events(starts_topic(topic, address))
    except Exception:
        logger.debug("Could not read the start events of %s.", key, exc_info=True)
        return False
    return any(msg[0] == key for _when, msg in events)


def result_was_lost(client: Any, key: str) -> bool:
    """Whether the scheduler's guard saw the completed result of ``key`` lost."""
    try:
        events = client.get_events(LOST_RESULTS_TOPIC)
    except Exception:
        return False
    return any(msg == key for _when, msg in events)


def killed_for_memory(client: Any, address: str | None) -> float | None:
    """
    The memory (bytes) of the dead worker at ``address`` if its nanny restarted it for
    exceeding its memory limit, else None. The nanny logs that event just before it
    terminates the worker, so it is looked for twice, briefly.
    """
    if address is None:
        return None
    for attempt_no in range(2):
        try:
            events = client.get_events(_internals.MEMORY_RESTART_TOPIC)
        except Exception:
            return None
        for _when, msg in reversed(events):
            rss = _internals.memory_restart_rss(msg, address)
            if rss is not None:
                return rss
        if attempt_no == 0:
            time.sleep(0.5)  # the nanny's event may trail the worker's death
    return None
