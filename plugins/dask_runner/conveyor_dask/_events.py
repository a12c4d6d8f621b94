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
    "KEY_PREFIX",
    "LOST_RESULTS_TOPIC",
    "killed_for_memory",
    "result_was_lost",
    "runner_topic",
    "started_there",
    "starts_topic",
]

logger = logging.getLogger("conveyor.dask")

#: Every Dask key conveyor submits starts with this.
KEY_PREFIX = "conveyor-"

#: The event topic under which the scheduler's guard logs the key of each completed run whose
#: result it saw lost.
LOST_RESULTS_TOPIC = "conveyor-lost-results"


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
