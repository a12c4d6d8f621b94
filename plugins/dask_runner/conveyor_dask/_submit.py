"""
Submitting attempts as Dask tasks, and ending each attempt when its Dask future finishes.

:class:`Submitter` submits each packed attempt under a key of its own, with its resource
restrictions and its upstream Dask futures as native dependencies; replays on the driver the
log records the workers publish; and, when a future finishes, acts on the verdict of
:func:`conveyor_dask._faults.classify`.
"""

from __future__ import annotations

import logging
import threading
import weakref
from functools import partial
from typing import Any

from conveyor.runners import Attempt, PendingResult
from conveyor.runners.remote import Outcome, loads, replay_records, report_outcome
from conveyor_dask import _events
from conveyor_dask._connect import Connection
from conveyor_dask._faults import Action, backend_reason, classify
from conveyor_dask._handle import RunHandle
from conveyor_dask._prefetch import SMALL_TYPES, Prefetcher
from conveyor_dask._results import DaskResult
from conveyor_dask._worker import run_task

__all__ = ["Submitter", "missing_resources"]

logger = logging.getLogger("conveyor.dask")

_NO_VALUE: Any = object()


class Submitter:
    """
    Submits attempts through one connection and reports their ends. Holds the runs in flight,
    the keys conveyor cancelled, and the completed results still on the cluster.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.topic = _events.runner_topic()
        self.stopping = False
        self.results: weakref.WeakSet[DaskResult] = weakref.WeakSet()
        self._prefetcher: Prefetcher | None = Prefetcher()
        self._lock = threading.Lock()
        self._inflight: dict[str, Attempt] = {}
        self._cancelled: set[str] = set()
        #: Small values of runs in flight that arrived with their end (before the future finished).
        self._values: dict[str, Any] = {}

    # -- the topic of log records ---------------------------------------------------------------

    def subscribe(self) -> None:
        """
        Listen to this runner's topic: mark a run Running when its worker announces its start
        (``(key, address)``, the worker named as where it runs if the flow records that), keep
        the small values runs send with their end, and replay on the driver the log records
        runs publish there.
        """
        try:
            self.connection.client.subscribe_topic(self.topic, self._on_event)
        except Exception:  # pragma: no cover - very old schedulers
            logger.warning("Dask scheduler does not forward events; task logs may be lost.")

    def stop(self) -> None:
        """Stop fetching small results and, while the client is up, listening to the topic."""
        self.stopping = True
        prefetcher, self._prefetcher = self._prefetcher, None
        if prefetcher is not None:
            prefetcher.stop()

    def unsubscribe(self) -> None:
        """Stop listening to the topic of log records."""
        client = self.connection.client
        if client is not None:
            try:
                client.unsubscribe_topic(self.topic)
            except Exception:
                pass

    # -- submitting -----------------------------------------------------------------------------

    def native(self, ref: Any) -> Any:
        """The Dask future standing for upstream result ``ref``, or None to send its value."""
        if (
            isinstance(ref, DaskResult)
            and ref.client is self.connection.client
            and ref.future is not None
        ):
            return ref.future
        if isinstance(ref, PendingResult):  # an upstream run still running here: its future
            return ref.handle
        return None

    def submit(
        self,
        attempt: Attempt,
        payload: bytes,
        deps: list[Any],
        restrictions: dict[str, Any],
        tries: int = 0,
    ) -> None:
        """Submit ``attempt`` as a new Dask task; report a refusal as a crash."""
        key = _events.run_key(attempt.task_name)
        handle = RunHandle(key, payload, deps, restrictions, tries)
        try:
            future = self.connection.client.submit(
                run_task, payload, self.topic, key, *deps, key=key, pure=False, **restrictions
            )
        except Exception as exc:
            attempt.crash(
                f"Dask refused {attempt.name!r}: {type(exc).__name__}: {exc}",
                reason=backend_reason(exc),
                exc=exc,
            )
            return
        handle.future = future
        attempt.handle = handle
        with self._lock:
            self._inflight[key] = attempt
        future.add_done_callback(partial(self._on_done, attempt, handle))

    # -- cancelling and stopping ------------------------------------------------------------------

    def mark_cancelled(self, key: str) -> bool:
        """Note that conveyor cancels ``key``; False if it is no longer in flight."""
        with self._lock:
            if key not in self._inflight:
                return False
            self._cancelled.add(key)
            return True

    def take_inflight(self) -> list[Attempt]:
        """Forget every run in flight, and return their attempts."""
        with self._lock:
            left = list(self._inflight.values())
            self._inflight.clear()
            self._cancelled.clear()
            self._values.clear()
        return left

    # -- ends -----------------------------------------------------------------------------------

    def _forget(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            self._inflight.pop(key, None)
            cancelled = key in self._cancelled
            self._cancelled.discard(key)
            return cancelled, self._values.pop(key, _NO_VALUE)

    def _on_done(self, attempt: Attempt, handle: RunHandle, _future: Any) -> None:
        cancelled, value = self._forget(handle.key)
        verdict = classify(attempt, handle, cancelled, self)
        action = verdict.action
        if action is Action.COMPLETE and value is not _NO_VALUE and verdict.kind is type(value):
            if not attempt.finished:
                attempt.succeed(value)  # it came with the run's end: nothing to fetch
            handle.future.release()
        elif action is Action.COMPLETE:
            self._complete(attempt, handle.future, verdict.kind)
        elif action is Action.CRASH:
            assert verdict.reason is not None
            attempt.crash(verdict.message, reason=verdict.reason, exc=verdict.exc)
        elif action is Action.REPORT:
            assert verdict.outcome is not None
            report_outcome(attempt, verdict.outcome, None)
        elif action is Action.RESUBMIT:
            logger.debug("Resubmitting %s: its worker died before it started.", attempt.name)
            self.submit(attempt, handle.payload, handle.deps, handle.restrictions, handle.tries + 1)

    def _complete(self, attempt: Attempt, future: Any, kind: Any) -> None:
        if attempt.finished:
            future.release()
            return
        if kind is type(None):  # nothing to keep on the cluster
            attempt.succeed(None)
            future.release()
            return
        prefetcher = self._prefetcher if kind in SMALL_TYPES else None
        ref = DaskResult(future, self.connection.client, attempt.name, prefetcher)
        self.results.add(ref)
        if prefetcher is not None:
            prefetcher.add(ref)
        attempt.succeed(ref)

    # -- the evidence classify() asks for (conveyor_dask._faults.Evidence) ---------------------

    def backend_gone(self) -> bool:
        return self.stopping or self.connection.gone()

    def result_was_lost(self, key: str) -> bool:
        return _events.result_was_lost(self.connection.client, key)

    def started_there(self, key: str, address: str | None) -> bool:
        return _events.started_there(self.connection.client, self.topic, key, address)

    def killed_for_memory(self, address: str | None) -> float | None:
        return _events.killed_for_memory(self.connection.client, address)

    def _on_event(self, event: Any) -> None:
        """One event of the runner's topic: a run's start, or the log records of a run."""
        _, msg = event
        try:
            kind = msg[0]
        except Exception:  # pragma: no cover
            return
        if kind == "logs":
            _replay_logs(msg)
        elif kind == "value":
            with self._lock:
                if msg[1] in self._inflight:
                    self._values[msg[1]] = msg[2]
        elif _events.is_run_key(kind):
            with self._lock:
                attempt = self._inflight.get(kind)
            if attempt is not None:
                try:
                    # Where it runs is named only when the flow records it (a string per run).
                    attempt.mark_running(f"dask worker {msg[1]}" if attempt.wants_where else None)
                except Exception:  # pragma: no cover - an observer's fault is the engine's
                    logger.debug("Marking %s running failed.", kind, exc_info=True)


def _replay_logs(msg: Any) -> None:
    """Hand the log records a run published (``("logs", key, bytes)``) to the driver's loggers."""
    try:
        records = loads(msg[2])
    except Exception:  # pragma: no cover
        logger.debug("Could not unpickle log records of %s", msg[1], exc_info=True)
        return
    replay_records(Outcome("ok", records=tuple(records)))


def missing_resources(client: Any, wanted: dict[str, float]) -> str | None:
    """Why no worker of ``client``'s cluster can run a task asking for ``wanted``, or None."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # pragma: no cover - older distributed
        info = client.scheduler_info()
    except Exception as exc:
        return f"Could not ask the Dask scheduler which resources it has: {exc}"
    offers = {a: dict(w.get("resources") or {}) for a, w in info.get("workers", {}).items()}
    if any(all(res.get(k, 0) >= v for k, v in wanted.items()) for res in offers.values()):
        return None
    offered = sorted({f"{k}={v}" for res in offers.values() for k, v in res.items()})
    return (
        f"No worker of the Dask cluster offers the resources {wanted!r} (the workers offer "
        f"{', '.join(offered) or 'no resources'}); start workers with e.g. "
        f'`dask worker --resources "{",".join(f"{k}={v}" for k, v in wanted.items())}"` '
        "or `cluster_kwargs={'resources': {...}}`, or drop `resources` from the task."
    )
