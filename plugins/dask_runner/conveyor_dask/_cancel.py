"""
Stopping the body of a cancelled (or timed-out) run: a Dask task's thread cannot be interrupted,
so on a cluster the runner started, the worker process running it is killed (after the
completed results only it holds are copied elsewhere) and its nanny starts a fresh one.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from conveyor_dask import _processes
from conveyor_dask._connect import Connection
from conveyor_dask._events import started_there
from conveyor_dask._handle import RunHandle
from conveyor_dask._results import DaskResult
from conveyor_dask._worker import cancel_key

__all__ = ["WorkerStopper"]

logger = logging.getLogger("conveyor.dask")


class WorkerStopper:
    """
    Stops the work of cancelled runs on one connection. Remembers the workers it stopped (the
    scheduler may still list one a moment after), and the threads restarting remote ones.
    """

    def __init__(
        self, connection: Connection, topic: str, results: weakref.WeakSet[DaskResult]
    ) -> None:
        self._connection = connection
        self._topic = topic
        self._results = results
        self._stopped: set[str] = set()
        self._restarts: list[threading.Thread] = []

    def stop(self, handle: RunHandle, name: str) -> bool:
        """
        Cancel ``handle``'s Dask task (of run ``name``) and stop its body where it runs. Return True if the work
        is stopped (or never starts), False if it runs on a worker this runner may not restart.
        """
        client = self._connection.client
        if client is None:
            return True
        # First tell every worker the key is cancelled, so none starts its body from now on and
        # each says exactly whether it runs it already; then cancel the Dask task.
        running = self._where_running(client, handle.key)
        try:
            client.cancel([handle.future], reason="conveyor-cancel")
        except Exception:
            logger.debug("Cancelling %s failed.", handle.key, exc_info=True)
        if not running:
            return True  # it never started, or already ended: it will not run
        if not self._connection.owns_cluster:
            return False  # a thread cannot be stopped, and we may not restart others' workers
        for address, pid in running.items():
            self._stop_worker(address, pid, name)
        return True

    def join(self, timeout: float = 30) -> None:
        """Wait for the worker restarts under way (each for at most ``timeout`` seconds)."""
        for thread in list(self._restarts):
            thread.join(timeout)
        self._restarts.clear()

    def _where_running(self, client: Any, key: str) -> dict[str, int]:
        """
        Mark ``key`` cancelled on every worker (:func:`~conveyor_dask._worker.cancel_key`); the
        workers running its body, with their pids (0 where unknown).
        """
        try:
            # Ask only the workers this runner has not just stopped: the scheduler may still
            # list one it killed a moment ago, and reaching it would take the connect timeout.
            answers = client.run(cancel_key, key, workers=self._live_workers(), on_error="return")
            return {a: pid for a, pid in answers.items() if isinstance(pid, int) and pid}
        except Exception:
            running = {}
            try:
                for address, keys in client.processing().items():
                    if key in keys and started_there(client, self._topic, key, address):
                        running[address] = 0
            except Exception:
                logger.debug("Could not tell where %s runs.", key, exc_info=True)
            return running

    def _live_workers(self) -> list[str]:
        """The scheduler's workers, less those this runner stopped."""
        workers = self._connection.client.scheduler_info(n_workers=-1)["workers"]
        return [w for w in workers if w not in self._stopped]

    def _stop_worker(self, address: str, pid: int, name: str) -> None:
        """Stop the worker process running ``name``; its nanny starts a fresh one."""
        logger.warning(
            "Stopping Dask worker %s to stop %r, which cannot be interrupted otherwise; its "
            "nanny starts a new worker.",
            address,
            name,
        )
        self._stopped.add(address)
        try:
            self._rescue_results(address)
        except Exception:
            logger.debug("Moving results off %s failed.", address, exc_info=True)
        if pid and _processes.is_descendant(pid) and _processes.kill(pid):
            return
        thread = threading.Thread(
            target=self._restart, args=(address,), name="conveyor-dask-restart", daemon=True
        )
        self._restarts = [t for t in self._restarts if t.is_alive()]
        self._restarts.append(thread)
        thread.start()

    def _restart(self, address: str) -> None:
        client = self._connection.client
        if client is None:
            return
        try:
            client.restart_workers([address], timeout=60, raise_for_error=False)
        except Exception:
            logger.warning("Restarting Dask worker %s failed.", address, exc_info=True)

    def _rescue_results(self, address: str) -> None:
        """Copy completed results that only ``address`` holds to another worker."""
        client = self._connection.client
        futures = [r.future for r in list(self._results) if r.future is not None]
        if not futures:
            return
        who_has = client.who_has(futures)
        only_there = [f for f in futures if list(who_has.get(f.key, ())) == [address]]
        if not only_there:
            return
        others = [w for w in self._live_workers() if w != address]
        if others:
            client.replicate(only_there, n=1, workers=others)
