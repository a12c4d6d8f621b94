"""
When the dispatcher looks at the runs in flight next: how long it waits in Ray for a run it
watches, and when it polls the others.

While at most WATCH_LIMIT runs are in flight, each is reported as soon as it finishes. A run
submitted by the dispatcher itself (a downstream run whose upstream runs just finished: a link
of a chain) is waited on in Ray: ray.wait returns at once, about 0.2 ms sooner than a Ray
callback would, which every link pays. The dispatcher waits WATCH_MIN seconds at a time,
doubling up to WATCH_MAX while nothing finishes, so that it also sees its queue. A run that
another thread submits gets a Ray callback instead, which hands it to the dispatcher through its
queue at once (the dispatcher cannot be woken from a ray.wait).

More runs in flight are polled in batches with ray.wait and one ray.get, the oldest POLL_WINDOW
first. A poll costs the driver about 0.25 ms however many runs it reports, so while runs finish,
the next poll comes when about POLL_BATCH more should have finished at the last poll's rate
(between POLL_MIN and POLL_BUSY_MAX seconds); while none finishes, the wait doubles up to
POLL_MAX.
"""

from __future__ import annotations

import time

__all__ = ["POLL_WINDOW", "WATCH_LIMIT", "Pace"]

WATCH_LIMIT = 8
WATCH_MIN = 0.005
WATCH_MAX = 0.02
POLL_MIN = 0.005
POLL_BUSY_MAX = 0.02
POLL_MAX = 0.05
POLL_BATCH = 32
POLL_WINDOW = 128


class Pace:
    """The dispatcher's watch step and poll times, kept between its rounds."""

    __slots__ = ("_last_poll", "_next_poll", "_poll", "_polling", "_watch", "_watching")

    def __init__(self) -> None:
        self._polling = False
        self._poll = POLL_MIN
        self._last_poll = self._next_poll = 0.0
        self._watch, self._watching = WATCH_MIN, 0

    def timeout(self, due: float | None) -> float | None:
        """How long a round may wait: until ``due`` (the timers'), or the next poll if sooner."""
        if not self._polling:
            return due
        wait = max(0.0, self._next_poll - time.monotonic())
        return wait if due is None else min(due, wait)

    def watch_step(self, watching: int, timeout: float | None) -> float:
        """How long to wait in Ray for one of the ``watching`` runs watched, at most ``timeout``."""
        if watching != self._watching:  # runs came or went: wait in short steps again
            self._watch, self._watching = WATCH_MIN, watching
        return self._watch if timeout is None else min(timeout, self._watch)

    def watched(self, found: bool | None) -> None:
        """A wait in Ray ended; ``found``: whether a run had finished."""
        self._watch = WATCH_MIN if found else min(self._watch * 2, WATCH_MAX)

    def poll_due(self, polled: bool, now: float) -> bool:
        """Whether to poll at ``now``; ``polled``: whether any run is polled at all."""
        if not polled:
            self._polling = False
            return False
        if not self._polling:  # more than WATCH_LIMIT runs are in flight: first poll soon
            self._polling = True
            self._poll = POLL_MIN
            self._last_poll, self._next_poll = now, now + POLL_MIN
            return False
        return now >= self._next_poll

    def polled(self, now: float, done: int, full: bool, left: int) -> None:
        """A poll at ``now`` reported ``done`` runs (``full``: all it asked); ``left`` remain."""
        if full and left:  # the whole window had finished: more may have
            poll = 0.0
        elif done:  # until about POLL_BATCH more (or all the rest) should be done
            poll = min(POLL_BATCH, max(left, 1)) * (now - self._last_poll) / done
            poll = min(max(poll, POLL_MIN), POLL_BUSY_MAX)
        else:
            poll = min(max(self._poll, POLL_MIN) * 2, POLL_MAX)
        self._poll = poll
        self._last_poll, self._next_poll = now, now + poll
