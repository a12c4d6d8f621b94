"""
Small results fetched ahead: a kept Dask future costs the driver about 5 KB, so a large map of
small numbers keeps at most :data:`SMALL_HELD` of them on the cluster and fetches the oldest;
and the first ``result()`` of one fetches, in the same round trip, up to :data:`BATCH` others
completed so far (:meth:`Prefetcher.take`).
"""

from __future__ import annotations

import collections
import threading
import weakref
from typing import Any

from conveyor.states import ResultRef
from conveyor_dask._events import SMALL_TYPES
from conveyor_dask._results import DaskResult

__all__ = ["BATCH", "SMALL_HELD", "SMALL_TYPES", "Prefetcher"]

#: Up to SMALL_HELD results of SMALL_TYPES stay on the cluster as Dask futures; beyond that the
#: oldest are fetched in batches and their futures released, so a large map of small results
#: costs the driver its values, not a Dask future per run.
SMALL_HELD = 2048
#: At most this many other small results are fetched along with the one asked for.
BATCH = 1024


class Prefetcher:
    """Keeps at most SMALL_HELD small results on the cluster, fetching the oldest in batches."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: collections.deque[weakref.ref[DaskResult]] = collections.deque()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="conveyor-dask-fetch", daemon=True)
        self._thread.start()

    def add(self, ref: DaskResult) -> None:
        """Count ``ref`` among the held small results."""
        with self._cond:
            self._held.append(weakref.ref(ref))
            if len(self._held) > SMALL_HELD:
                self._cond.notify()

    def take(self) -> list[DaskResult]:
        """
        Up to BATCH held small results not fetched yet, the oldest first, which the caller
        fetches (with the one it was asked for) in one ``client.gather``.
        """
        out: list[DaskResult] = []
        with self._cond:
            held = self._held
            while held and len(out) < BATCH:
                ref = held.popleft()()
                if ref is not None and ref.future is not None:
                    ref.batch = None
                    out.append(ref)
        return out

    def stop(self) -> None:
        """End the fetching thread (within 30 s)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while len(self._held) <= SMALL_HELD and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                oldest = [self._held.popleft() for _ in range(SMALL_HELD // 2)]
            refs: list[ResultRef[Any]] = [
                r for w in oldest if (r := w()) is not None and r.future is not None
            ]
            if refs:
                DaskResult.get_many(refs)  # keeps each value; a lost one stays lazy
