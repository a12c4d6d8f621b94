"""
The ``dask`` runner: conveyor task runs as Dask tasks, on a temporary local cluster, a cluster
class of your choice, or an existing scheduler.

Importing this module does not import ``distributed``; :meth:`DaskRunner.on_start` does.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Mapping
from functools import partial
from typing import Any

import attrs

from conveyor.exceptions import BackendUnavailable, ConfigError
from conveyor.runners import Attempt, Capabilities, ConcurrencyType, PendingResult, Runner
from conveyor.runners.remote import Outcome, loads, pack_or_crash, replay_records, report_outcome
from conveyor.states import ResultRef
from conveyor_dask._results import DaskResult

__all__ = ["DaskRunner"]

logger = logging.getLogger("conveyor.dask")

#: Dask settings pinned on clusters this runner starts itself: no native retries (conveyor's
#: ``retries``/``crash_retries`` decide how often a body runs).
OWNED_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.scheduler.allowed-failures": 0,
}


# A run whose worker died before its body started is resubmitted at most this many times.
_MAX_UNSTARTED_RESUBMITS = 2


def _check_timeout(_inst: Any, _attr: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        msg = f"DaskRunner: `connect_timeout={value!r}` is invalid; give a number of seconds > 0."
        raise ConfigError(msg)


def _check_cluster_class(_inst: Any, _attr: Any, value: Any) -> None:
    if value is None or isinstance(value, type):
        return
    if isinstance(value, str) and "." in value.strip(". :"):
        return
    msg = (
        f"DaskRunner: `cluster_class={value!r}` is invalid; give a class or its dotted name, such "
        "as 'distributed.LocalCluster' or 'dask_jobqueue.SLURMCluster'."
    )
    raise ConfigError(msg)


def _check_mapping(_inst: Any, attr: Any, value: Any) -> None:
    if value is None and attr.name == "adapt_kwargs":
        return
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        msg = f"DaskRunner: `{attr.name}={value!r}` is invalid; give a table of option names to values."
        raise ConfigError(msg)


def _check_address(_inst: Any, _attr: Any, value: Any) -> None:
    if value is None or (isinstance(value, str) and value.strip()):
        return
    msg = f"DaskRunner: `address={value!r}` is invalid; give a scheduler address such as 'tcp://10.0.0.5:8786'."
    raise ConfigError(msg)


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _in_task_worker() -> Any:
    """The Dask worker whose task thread this is, or None."""
    try:
        from distributed.worker import thread_state  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover
        return None
    state = getattr(thread_state, "execution_state", None)
    if not state:
        return None
    return state.get("worker")


@attrs.define(kw_only=True, eq=True)
class DaskRunner(Runner):
    """
    Runs each task run as a Dask task, on a ``distributed`` cluster.

    Options:

    - ``address``: the scheduler of an existing cluster, e.g. ``"tcp://10.0.0.5:8786"``. The
      runner connects to it and never shuts it down.
    - ``cluster_class``: a cluster class (or its dotted name) to start, with ``cluster_kwargs``;
      it is closed when the runner stops. Default:
      :class:`~conveyor_dask.cluster.LocalProcessCluster`, a ``distributed.LocalCluster`` whose
      scheduler runs in its own process, with worker processes on 127.0.0.1, one thread each,
      as many as CPUs (at most 4), its dashboard on a free loopback port.
    - ``adapt_kwargs``: call ``cluster.adapt(**adapt_kwargs)`` on a cluster the runner started.
    - ``client_kwargs``: extra keyword arguments for ``distributed.Client``.
    - ``connect_timeout``: seconds to reach the scheduler before
      :class:`~conveyor.BackendUnavailable` (default 10).

    Inside a Dask task (a nested flow) the runner reuses that worker's client, and secedes the
    task's thread while the nested flow runs, so it neither builds a cluster nor deadlocks.
    """

    name = "dask"
    concurrency = ConcurrencyType.PARALLEL
    # Timeouts and cancels stop a running task only on a cluster the runner started (it
    # restarts that worker); on an external cluster they cannot, so neither is claimed here.
    capabilities = Capabilities(
        hard_timeouts=False,
        cancel_running=False,
        native_futures=True,
        resources=True,
        isolation=True,
    )

    address: str | None = attrs.field(default=None, validator=_check_address)
    cluster_class: str | type | None = attrs.field(default=None, validator=_check_cluster_class)
    cluster_kwargs: dict[str, Any] = attrs.field(factory=dict, validator=_check_mapping)
    adapt_kwargs: dict[str, Any] | None = attrs.field(default=None, validator=_check_mapping)
    client_kwargs: dict[str, Any] = attrs.field(factory=dict, validator=_check_mapping)
    connect_timeout: float = attrs.field(default=10.0, validator=_check_timeout)

    _client: Any = attrs.field(default=None, init=False, eq=False, repr=False)
    _cluster: Any = attrs.field(default=None, init=False, eq=False, repr=False)
    _owns_client: bool = attrs.field(default=False, init=False, eq=False, repr=False)
    _owns_cluster: bool = attrs.field(default=False, init=False, eq=False, repr=False)
    _seceded: Any = attrs.field(default=None, init=False, eq=False, repr=False)
    _nest_worker: Any = attrs.field(default=None, init=False, eq=False, repr=False)
    _topic: str | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, eq=False, repr=False)
    _cancelled: set[str] = attrs.field(factory=set, init=False, eq=False, repr=False)
    _inflight: dict[str, Attempt] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    _results: Any = attrs.field(factory=weakref.WeakSet, init=False, eq=False, repr=False)
    _restarts: list[threading.Thread] = attrs.field(factory=list, init=False, eq=False, repr=False)
    _fetcher: _Fetcher | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _stopped_workers: set[str] = attrs.field(factory=set, init=False, eq=False, repr=False)
    _guarded: bool = attrs.field(default=False, init=False, eq=False, repr=False)
    _stopping: bool = attrs.field(default=False, init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.address is not None and self.cluster_class is not None:
            msg = (
                "DaskRunner: give either `address` (connect to a running scheduler) or "
                "`cluster_class` (start a cluster), not both."
            )
            raise ConfigError(msg)
        if self.address is not None and (self.adapt_kwargs is not None or self.cluster_kwargs):
            msg = (
                "DaskRunner: `cluster_kwargs` and `adapt_kwargs` apply to a cluster the runner "
                "starts, so they cannot be combined with `address`."
            )
            raise ConfigError(msg)

    # -- facts --------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` while started, else None."""
        return self._client

    @property
    def cluster(self) -> Any:
        """The cluster this runner started, or None (with ``address``, or nested)."""
        return self._cluster

    @property
    def owns_cluster(self) -> bool:
        """Whether the runner started its cluster (and so may pin settings and restart workers)."""
        return self._owns_cluster

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> DaskRunner:
        # An async nested flow starts the runner in another thread; secede this task thread
        # here, where Dask knows it.
        self._nest_worker = _in_task_worker()
        if self._nest_worker is not None:
            self._secede()
        try:
            return await super().__aenter__()
        except BaseException:
            self._rejoin()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await super().__aexit__(*exc)
        finally:
            self._rejoin()

    def on_start(self) -> None:
        import distributed

        self._stopping = False
        self._stopped_workers = set()
        self._topic = f"conveyor-runner-{os.urandom(16).hex()}"
        worker = self._nest_worker or _in_task_worker()
        if (
            worker is not None
            and self.cluster_class is None
            and self.address
            in (
                None,
                worker.scheduler.address,
            )
        ):
            # A nested flow: reuse the worker's client; never build a cluster in a worker.
            self._client = distributed.get_client()
            if self._seceded is None:
                self._secede()
            logger.debug("Nested flow on Dask worker %s reuses its client.", worker.address)
        elif self.address is not None:
            self._client = self._connect(self.address, self.address)
            self._owns_client = True
        else:
            cluster = self._start_cluster()
            self._cluster, self._owns_cluster = cluster, True
            try:
                self._client = self._connect(cluster, repr(cluster))
            except BaseException:
                self._close_cluster()
                raise
            self._owns_client = True
        self._fetcher = _Fetcher()
        try:
            self._client.subscribe_topic(self._topic, self._on_event)
        except Exception:  # pragma: no cover - very old schedulers
            logger.warning("Dask scheduler does not forward events; task logs may be lost.")
        self._install_guard()
        link = getattr(self._client, "dashboard_link", None)
        if self._owns_client and link:
            logger.info("Dask dashboard: %s", link)

    def _connect(self, target: Any, label: str) -> Any:
        import dask
        from distributed import Client

        kwargs = {"timeout": self.connect_timeout, "set_as_default": False}
        kwargs.update(self.client_kwargs)
        try:
            # The client's stream to the scheduler keeps its last batches of messages for
            # debugging (1,000 by default), each holding the submitted tasks' payloads: in a
            # large map that is most of the driver's memory. Keep 100.
            with dask.config.set({"distributed.admin.low-level-log-length": _CLIENT_LOG_LENGTH}):
                return Client(target, **kwargs)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            msg = (
                f"Runner 'dask' could not reach the Dask scheduler at {label} within "
                f"{self.connect_timeout} s ({type(exc).__name__}: {exc}); check that it is "
                "running and reachable, or raise `connect_timeout`."
            )
            raise BackendUnavailable(msg) from exc

    def _cluster_factory(self) -> Any:
        spec = self.cluster_class
        if spec is None:
            from conveyor_dask.cluster import LocalProcessCluster

            return LocalProcessCluster
        if isinstance(spec, type):
            return spec
        module, _, attr = spec.strip().replace(":", ".").rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            msg = (
                f"DaskRunner: `cluster_class={spec!r}` cannot be imported ({type(exc).__name__}: "
                f"{exc}); install the package that provides it or fix the dotted name."
            )
            raise ConfigError(msg) from exc

    def _start_cluster(self) -> Any:
        import dask
        from distributed import LocalCluster

        factory = self._cluster_factory()
        kwargs = dict(self.cluster_kwargs)
        if isinstance(factory, type) and issubclass(factory, LocalCluster):
            defaults: dict[str, Any] = {
                "n_workers": _default_workers(),
                "threads_per_worker": 1,
                "processes": True,
                "host": "127.0.0.1",
                "dashboard_address": "127.0.0.1:0",
            }
            kwargs = {**defaults, **kwargs}
        try:
            with dask.config.set(OWNED_CLUSTER_CONFIG):
                cluster = factory(**kwargs)
        except (ConfigError, BackendUnavailable):
            raise
        except Exception as exc:
            name = getattr(factory, "__qualname__", repr(factory))
            msg = f"Runner 'dask' could not start {name}(**{kwargs!r}): {type(exc).__name__}: {exc}"
            raise BackendUnavailable(msg) from exc
        if self.adapt_kwargs is not None:
            cluster.adapt(**self.adapt_kwargs)
        return cluster

    def _install_guard(self) -> None:
        from conveyor_dask._worker import GUARD_NAME, guard_plugin, has_guard

        self._guarded = False
        try:
            if not self._client.run_on_scheduler(has_guard):
                self._client.register_plugin(guard_plugin(), name=GUARD_NAME)
            self._guarded = True
        except Exception as exc:
            logger.warning(
                "Could not install conveyor's scheduler plugin (%s: %s); if a worker dies, Dask "
                "may recompute completed runs whose results it held.",
                type(exc).__name__,
                exc,
            )

    def on_stop(self) -> None:
        try:
            self._stop()
        except BaseException as exc:
            if not isinstance(exc, Exception):  # a second Ctrl-C cut the stop short
                self._abandon_cluster()
            raise

    def _stop(self) -> None:
        self._stopping = True
        fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None:
            fetcher.stop()
        client = self._client
        for thread in list(self._restarts):
            thread.join(30)
        self._restarts.clear()
        if client is not None and self._topic is not None:
            try:
                client.unsubscribe_topic(self._topic)
            except Exception:
                pass
        if self._owns_client and client is not None:
            try:
                client.close(timeout=10)
            except Exception:  # pragma: no cover
                logger.debug("Closing the Dask client failed.", exc_info=True)
        self._close_cluster()
        self._client = self._cluster = None
        self._owns_client = self._owns_cluster = False
        self._rejoin()
        with self._lock:
            leftover = list(self._inflight.values())
            self._inflight.clear()
            self._cancelled.clear()
        for attempt in leftover:
            attempt.crash(
                f"Runner 'dask' stopped while {attempt.name!r} was still running.",
                reason="backend-lost",
            )

    def _close_cluster(self) -> None:
        cluster, owned = self._cluster, self._owns_cluster
        if cluster is not None and owned:
            try:
                cluster.close(timeout=20)
            except Exception:  # pragma: no cover
                logger.debug("Closing the Dask cluster failed.", exc_info=True)
            self._cluster = None

    def _abandon_cluster(self) -> None:
        """
        Kill the processes of the cluster this runner started, at once, when an interrupt cut
        its close short; and keep distributed's exit handler from waiting (up to 10 s) on the
        close that was interrupted. That close goes on in the cluster's own thread, now quickly
        (no worker is restarted); in a program that is exiting, it ends with the program.
        """
        from distributed import LocalCluster

        from conveyor_dask.cluster import SchedulerProcess

        cluster, self._cluster = self._cluster, None
        if cluster is None or not self._owns_cluster:
            return
        cluster.shutdown_on_close = False
        if not isinstance(cluster, LocalCluster):
            return  # its processes are not known to be this machine's
        pids = []
        for nanny in list(cluster.workers.values()):
            if hasattr(nanny, "auto_restart"):
                nanny.auto_restart = False  # the close going on in the background ends it
            pids.append(getattr(nanny, "pid", None))
        if isinstance(cluster.scheduler, SchedulerProcess):
            pids.append(cluster.scheduler.pid)
        for pid in pids:
            if isinstance(pid, int) and pid != os.getpid():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def _secede(self) -> None:
        from distributed import secede

        secede()  # type: ignore[no-untyped-call]
        self._seceded = threading.current_thread()

    def _rejoin(self) -> None:
        if self._seceded is threading.current_thread():
            from distributed import rejoin

            self._seceded = None
            rejoin()  # type: ignore[no-untyped-call]

    # -- running ------------------------------------------------------------------------------

    def _native(self, ref: Any) -> Any:
        if isinstance(ref, DaskResult) and ref.client is self._client and ref.future is not None:
            return ref.future
        if isinstance(ref, PendingResult):  # an upstream run still running here: its future
            return ref.handle
        return None

    def upstream_handle(self, attempt: Attempt) -> Any:
        """The Dask future of a running attempt, so a downstream run is submitted at once."""
        handle = attempt.handle
        return handle[0] if handle else None

    def execute(self, attempt: Attempt) -> None:
        packed = pack_or_crash(attempt, native=self._native)
        if packed is None:
            return
        payload, deps = packed
        client = self._client
        if client is None or client.status not in ("running", "connecting", "newly-created"):
            attempt.crash(
                f"The Dask client is {getattr(client, 'status', 'gone')}, so {attempt.name!r} "
                "cannot be submitted; the cluster was lost.",
                reason="backend-lost",
            )
            return
        restrictions: dict[str, Any] = {}
        if attempt.resources:
            problem = self._missing_resources(dict(attempt.resources))
            if problem:
                attempt.crash(problem, reason="resources-unavailable")
                return
            restrictions["resources"] = dict(attempt.resources)
        self._submit(attempt, payload, deps, restrictions, 0)

    def _submit(
        self,
        attempt: Attempt,
        payload: bytes,
        deps: list[Any],
        restrictions: dict[str, Any],
        tries: int,
    ) -> None:
        from conveyor_dask._worker import KEY_PREFIX, run_task

        client = self._client
        key = f"{KEY_PREFIX}{attempt.task_name}-{os.urandom(16).hex()}"
        try:
            future = client.submit(
                run_task, payload, self._topic, key, *deps, key=key, pure=False, **restrictions
            )
        except Exception as exc:
            attempt.crash(
                f"Dask refused {attempt.name!r}: {type(exc).__name__}: {exc}",
                reason=_backend_reason(exc),
                exc=exc,
            )
            return
        attempt.handle = (future, deps, key)
        with self._lock:
            self._inflight[key] = attempt
        future.add_done_callback(
            partial(self._on_done, attempt, payload, deps, restrictions, tries)
        )

    def _missing_resources(self, wanted: dict[str, float]) -> str | None:
        try:
            info = self._client.scheduler_info(n_workers=-1)
        except TypeError:  # pragma: no cover - older distributed
            info = self._client.scheduler_info()
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

    def _on_event(self, event: Any) -> None:
        _, msg = event
        try:
            kind, key = msg[0], msg[1]
        except Exception:  # pragma: no cover
            return
        if kind == "logs":
            try:
                records = loads(msg[2])
            except Exception:  # pragma: no cover
                logger.debug("Could not unpickle log records of %s", key, exc_info=True)
                return
            replay_records(Outcome("ok", records=tuple(records)))

    def _forget(self, key: str) -> bool:
        with self._lock:
            self._inflight.pop(key, None)
            cancelled = key in self._cancelled
            self._cancelled.discard(key)
            return cancelled

    def _result_was_lost(self, key: str) -> bool:
        """Whether the scheduler's guard saw the completed result of ``key`` lost."""
        from conveyor_dask._worker import LOST_RESULTS_TOPIC

        try:
            events = self._client.get_events(LOST_RESULTS_TOPIC)
        except Exception:
            return False
        return any(msg == key for _when, msg in events)

    def _started_there(self, key: str, address: str | None) -> bool:
        """
        Whether the worker at ``address`` logged the start of ``key``'s body, from the
        scheduler's last events of that worker's starts topic (see ``_worker.run_task``).
        """
        from conveyor_dask._worker import starts_topic

        if address is None or self._topic is None:
            return False
        try:
            events = self._client.get_events(starts_topic(self._topic, address))
        except Exception:
            logger.debug("Could not read the start events of %s.", key, exc_info=True)
            return False
        return any(msg[0] == key for _when, msg in events)

    def _on_done(
        self,
        attempt: Attempt,
        payload: bytes,
        deps: list[Any],
        restrictions: dict[str, Any],
        tries: int,
        future: Any,
    ) -> None:
        key = future.key
        cancelled = self._forget(key)
        status = future.status
        if status == "finished" or (
            status == "cancelled" and not cancelled and self._result_was_lost(key)
        ):
            # A run whose result was lost with its worker before this callback ran finished
            # all the same: it is COMPLETED, and fetching its value raises result-lost.
            if attempt.finished:
                future.release()
                return
            kind = future.type if status == "finished" else None
            if kind is type(None):  # nothing to keep on the cluster
                attempt.succeed(None)
                future.release()
                return
            ref = DaskResult(future, self._client, attempt.name)
            self._results.add(ref)
            fetcher = self._fetcher
            if kind in _SMALL_TYPES and fetcher is not None:
                fetcher.add(ref)
            attempt.succeed(ref)
            return
        if cancelled or attempt.finished:
            return
        if status == "cancelled":
            lost = [d for d in deps if getattr(d, "status", "finished") != "finished"]
            if lost:
                attempt.crash(
                    f"An upstream result of {attempt.name!r} was lost with its Dask worker, so "
                    "it could not run (conveyor does not let Dask recompute completed runs).",
                    reason="upstream-result",
                )
                return
            attempt.crash(
                f"The Dask cluster lost {attempt.name!r}: the scheduler connection was lost or "
                "the cluster was closed.",
                reason="backend-lost",
            )
            return
        try:
            exc = future.exception(timeout=30)
        except BaseException as err:
            if isinstance(err, KeyboardInterrupt):  # pragma: no cover
                raise
            attempt.crash(
                f"The Dask cluster lost {attempt.name!r} ({type(err).__name__}: {err}).",
                reason="backend-lost",
            )
            return
        self._report_error(attempt, exc, payload, deps, restrictions, tries)

    def _report_error(
        self,
        attempt: Attempt,
        exc: BaseException | None,
        payload: bytes,
        deps: list[Any],
        restrictions: dict[str, Any],
        tries: int,
    ) -> None:
        from distributed.scheduler import KilledWorker

        from conveyor_dask._worker import TaskOutcome

        if isinstance(exc, TaskOutcome):
            report_outcome(attempt, exc.outcome, None)
            return
        if isinstance(exc, KilledWorker) and self._backend_gone():
            attempt.crash(
                f"The Dask cluster shut down while {attempt.name!r} ran ({exc}).",
                reason="backend-lost",
                exc=exc,
            )
            return
        if isinstance(exc, KilledWorker):
            dead = getattr(getattr(exc, "last_worker", None), "address", None)
            unstarted = not self._started_there(attempt.handle[2], dead)
            if unstarted and tries < _MAX_UNSTARTED_RESUBMITS and not self._stopping:
                # Its worker died before this run's body started (it was queued behind the
                # culprit): the body never ran, so run it elsewhere.
                logger.debug("Resubmitting %s: its worker died before it started.", attempt.name)
                self._submit(attempt, payload, deps, restrictions, tries + 1)
                return
            rss = self._killed_for_memory(dead)
            if rss is not None:
                attempt.crash(
                    f"The Dask worker running {attempt.name!r} was restarted by its nanny for "
                    f"exceeding its memory limit (it used {rss / 2**20:.0f} MiB) ({exc}).",
                    reason="oom-killed",
                    exc=exc,
                )
                return
            attempt.crash(
                f"The Dask worker running {attempt.name!r} died ({exc}). The task may have "
                "called os._exit, been killed by a signal, or exceeded the worker's memory limit.",
                reason="worker-died",
                exc=exc,
            )
            return
        if exc is None:  # pragma: no cover
            attempt.crash(f"Dask reported {attempt.name!r} as erred without an error.")
            return
        attempt.crash(
            f"Dask failed {attempt.name!r}: {type(exc).__name__}: {exc}",
            reason=_backend_reason(exc),
            exc=exc,
        )

    def _killed_for_memory(self, address: str | None) -> float | None:
        """
        The memory (bytes) of the dead worker at ``address`` if its nanny restarted it for
        exceeding its memory limit, else None. The nanny logs that event just before it
        terminates the worker, so it is looked for twice, briefly.
        """
        if address is None:
            return None
        for attempt_no in range(2):
            try:
                events = self._client.get_events("worker-restart-memory")
            except Exception:
                return None
            for _when, msg in reversed(events):
                if isinstance(msg, dict) and msg.get("worker") == address:
                    return float(msg.get("rss") or 0.0)
            if attempt_no == 0:
                time.sleep(0.5)  # the nanny's event may trail the worker's death
        return None

    def _backend_gone(self) -> bool:
        """Whether the cluster or the scheduler connection is going or gone."""
        client, cluster = self._client, self._cluster
        if self._stopping or client is None or client.status != "running":
            return True
        status = getattr(getattr(cluster, "status", None), "name", "running")
        return status in ("closing", "closed", "failed")

    # -- cancelling ---------------------------------------------------------------------------

    def cancel(self, attempt: Attempt) -> bool:
        handle = attempt.handle
        if handle is None:
            return True  # never submitted
        future, _deps, key = handle
        with self._lock:
            if key not in self._inflight:
                return True  # already ended
            self._cancelled.add(key)
        client = self._client
        if client is None:
            return True
        try:
            client.cancel([future], reason="conveyor-cancel")
        except Exception:
            logger.debug("Cancelling %s failed.", key, exc_info=True)
        from conveyor_dask._worker import is_executing

        try:
            # Ask only the workers this runner has not just stopped: the scheduler may still
            # list one it killed a moment ago, and reaching it would take the connect timeout.
            live = self._live_workers()
            answers = client.run(is_executing, key, workers=live, on_error="return")
            running = {a: pid for a, pid in answers.items() if isinstance(pid, int) and pid}
        except Exception:
            running = {}
            try:
                for address, keys in client.processing().items():
                    if key in keys and self._started_there(key, address):
                        running[address] = 0
            except Exception:
                logger.debug("Could not tell where %s runs.", key, exc_info=True)
        if not running:
            return True  # it never started, or already ended: it will not run
        if not self._owns_cluster:
            return False  # a thread cannot be stopped, and we may not restart others' workers
        for address, pid in running.items():
            self._stop_worker(address, pid, attempt.name)
        return True

    def _live_workers(self) -> list[str]:
        """The scheduler's workers, less those this runner stopped."""
        workers = self._client.scheduler_info(n_workers=-1)["workers"]
        return [w for w in workers if w not in self._stopped_workers]

    def _stop_worker(self, address: str, pid: int, name: str) -> None:
        """Stop the worker process running ``name``; its nanny starts a fresh one."""
        logger.warning(
            "Stopping Dask worker %s to stop %r, which cannot be interrupted otherwise; its "
            "nanny starts a new worker.",
            address,
            name,
        )
        self._stopped_workers.add(address)
        try:
            self._rescue_results(address)
        except Exception:
            logger.debug("Moving results off %s failed.", address, exc_info=True)
        if pid and self._is_local_process(pid):
            import signal

            try:
                os.kill(pid, signal.SIGKILL)
                return
            except OSError:
                logger.debug("Could not kill worker pid %s.", pid, exc_info=True)

        def restart() -> None:
            client = self._client
            if client is None:
                return
            try:
                client.restart_workers([address], timeout=60, raise_for_error=False)
            except Exception:
                logger.warning("Restarting Dask worker %s failed.", address, exc_info=True)

        thread = threading.Thread(target=restart, name="conveyor-dask-restart", daemon=True)
        self._restarts = [t for t in self._restarts if t.is_alive()]
        self._restarts.append(thread)
        thread.start()

    def _is_local_process(self, pid: int) -> bool:
        """Whether ``pid`` is a worker process of the cluster this runner started on this host."""
        import psutil  # type: ignore[import-untyped]  # a dependency of distributed

        try:
            me = psutil.Process()
            return any(child.pid == pid for child in me.children(recursive=True))
        except Exception:
            return False

    def _rescue_results(self, address: str) -> None:
        """Copy completed results that only ``address`` holds to another worker."""
        client = self._client
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


# Results of these types (the scheduler tells the client a result's type) have no side effects
# when unpickled. Up to SMALL_HELD of them stay on the cluster as Dask futures (about 5 KB of
# driver memory each); beyond that the oldest are fetched in batches and their futures released,
# so a large map of small results costs the driver its values, not a Dask future per run.
_SMALL_TYPES = frozenset({bool, int, float, complex})
SMALL_HELD = 2048

_CLIENT_LOG_LENGTH = 100


class _Fetcher:
    """Keeps at most SMALL_HELD small results on the cluster, fetching the oldest in batches."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: collections.deque[weakref.ref[DaskResult]] = collections.deque()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="conveyor-dask-fetch", daemon=True)
        self._thread.start()

    def add(self, ref: DaskResult) -> None:
        with self._cond:
            self._held.append(weakref.ref(ref))
            if len(self._held) > SMALL_HELD:
                self._cond.notify()

    def stop(self) -> None:
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


def _backend_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if name in ("ClosedClientError", "CommClosedError", "FutureCancelledError", "CancelledError"):
        return "backend-lost"
    if isinstance(exc, OSError | TimeoutError):
        return "backend-lost"
    return "backend-error"
