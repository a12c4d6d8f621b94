"""
The runner's connection to Dask: the client, and the cluster when the runner starts one; who
owns which; closing what it owns, or abandoning it when an interrupt cuts the close short; and,
in a nested flow on a worker, the worker's own client and the seceded task thread.

Importing this module does not import ``distributed``: :func:`connect` does.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from typing import Any, Protocol

import attrs

from conveyor.exceptions import BackendUnavailable, ConfigError
from conveyor.redact import redact, redact_options
from conveyor_dask import _internals, _processes
from conveyor_dask._security import cluster_factory, secure_kwargs

__all__ = ["OWNED_CLUSTER_CONFIG", "Connection", "Secession", "connect", "in_task_worker"]

logger = logging.getLogger("conveyor.dask")

#: Dask settings pinned on clusters this runner starts itself: no native retries (conveyor's
#: ``retries``/``crash_retries`` decide how often a body runs).
OWNED_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.scheduler.allowed-failures": 0,
}

# The client's stream to the scheduler keeps its last batches of messages for debugging (1,000
# by default), each holding the submitted tasks' payloads: in a large map that is most of the
# driver's memory. Keep 100.
_CLIENT_LOG_LENGTH = 100

_WORKER_CLIENT_LOCK = threading.Lock()


class Options(Protocol):
    """The runner options a connection is made from (:class:`~conveyor_dask.DaskRunner`'s)."""

    address: str | None
    cluster_class: str | type | None
    cluster_kwargs: dict[str, Any]
    adapt_kwargs: dict[str, Any] | None
    client_kwargs: dict[str, Any]
    connect_timeout: float
    tls: bool


def default_workers() -> int:
    """How many workers a default local cluster gets: as many as CPUs, at most 4."""
    return max(1, min(os.cpu_count() or 1, 4))


def in_task_worker() -> Any:
    """The Dask worker whose task this code runs in, or None."""
    try:
        from distributed import get_worker  # defers importing distributed
    except ImportError:  # pragma: no cover
        return None
    try:
        return get_worker()
    except ValueError:
        return None


class Secession:
    """The task thread a nested flow seceded from the worker's pool, until it rejoins."""

    __slots__ = ("_thread",)

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """Whether a thread is seceded."""
        return self._thread is not None

    def secede(self) -> None:
        """Secede this task thread, so the worker runs other tasks while it waits."""
        # secede() hands the worker's event loop a callback that runs in a copy of this
        # thread's context, and the task that takes the freed slot inherits it. In an async
        # nested flow that context says "asyncio is running here" (sniffio's marker, set by
        # anyio), and that task's anyio.run() would refuse to start: clear the marker first.
        contextvars.copy_context().run(_secede_outside_event_loop)
        self._thread = threading.current_thread()

    def rejoin(self) -> None:
        """Rejoin the pool, if this is the thread that seceded."""
        if self._thread is threading.current_thread():
            from distributed import rejoin  # defers importing distributed

            self._thread = None
            rejoin()  # type: ignore[no-untyped-call]


def _secede_outside_event_loop() -> None:
    from distributed import secede  # defers importing distributed

    try:
        import sniffio  # what anyio marks the running event loop with, when installed
    except ImportError:  # pragma: no cover - anyio then sets no marker
        pass
    else:
        sniffio.current_async_library_cvar.set(None)
    secede()  # type: ignore[no-untyped-call]


@attrs.define
class Connection:
    """A started runner's client, and the cluster it started (if it did)."""

    client: Any = None
    cluster: Any = None
    owns_client: bool = False
    owns_cluster: bool = False

    def gone(self) -> bool:
        """Whether the cluster or the scheduler connection is going or gone."""
        client, cluster = self.client, self.cluster
        if client is None or client.status != "running":
            return True
        status = getattr(getattr(cluster, "status", None), "name", "running")
        return status in ("closing", "closed", "failed")

    def close(self) -> None:
        """Close the client and the cluster, if this connection made them."""
        client = self.client
        if self.owns_client and client is not None:
            try:
                client.close(timeout=10)
            except Exception:  # pragma: no cover
                logger.debug("Closing the Dask client failed.", exc_info=True)
        self.close_cluster()
        self.client = self.cluster = None
        self.owns_client = self.owns_cluster = False

    def close_cluster(self) -> None:
        """Close the cluster, if this connection started it."""
        cluster = self.cluster
        if cluster is not None and self.owns_cluster:
            try:
                cluster.close(timeout=20)
            except Exception:  # pragma: no cover
                logger.debug("Closing the Dask cluster failed.", exc_info=True)
            self.cluster = None

    def abandon(self) -> None:
        """
        Kill the processes of the cluster this connection started, at once, when an interrupt
        cut its close short; and keep distributed's exit handler from waiting (up to 10 s) on
        the close that was interrupted. That close goes on in the cluster's own thread, now
        quickly (no worker is restarted: the nannies are closing); in a program that is
        exiting, it ends with the program.
        """
        from distributed import LocalCluster  # defers importing distributed

        from conveyor_dask.cluster import SchedulerProcess  # imports distributed

        cluster, self.cluster = self.cluster, None
        if cluster is None or not self.owns_cluster:
            return
        _internals.skip_close_at_exit(cluster)
        if not isinstance(cluster, LocalCluster):
            return  # its processes are not known to be this machine's
        pids = _internals.worker_pids(cluster)
        if isinstance(cluster.scheduler, SchedulerProcess):
            pids.append(cluster.scheduler.pid)
        for pid in pids:
            if isinstance(pid, int) and pid != os.getpid():
                _processes.kill(pid)


def connect(options: Options, worker: Any, secession: Secession) -> Connection:
    """
    Connect as ``options`` say: in a nested flow on ``worker``, through that worker's client
    (seceding this thread if ``secession`` is not active yet); else to ``options.address``, or
    to a cluster started here. Raises :class:`~conveyor.BackendUnavailable` or
    :class:`~conveyor.ConfigError`; a cluster it started before failing is closed.
    """
    import distributed  # defers importing distributed until a runner starts

    if (
        worker is not None
        and options.cluster_class is None
        and options.address in (None, _internals.worker_scheduler_address(worker))
    ):
        # A nested flow: reuse the worker's client; never build a cluster in a worker. Two task
        # threads that ask at once would each make one (distributed does not lock it; a TLS
        # handshake widens the window), so they take turns.
        with _WORKER_CLIENT_LOCK:
            client = distributed.get_client()
        if not secession.active:
            secession.secede()
        logger.debug("Nested flow on Dask worker %s reuses its client.", worker.address)
        return Connection(client)
    if options.address is not None:
        label = redact(options.address)
        return Connection(_client(options, options.address, label), owns_client=True)
    connection = Connection(cluster=_start_cluster(options), owns_cluster=True)
    try:
        connection.client = _client(options, connection.cluster, repr(connection.cluster))
    except BaseException:
        connection.close_cluster()
        raise
    connection.owns_client = True
    return connection


def _client(options: Options, target: Any, label: str) -> Any:
    import dask  # defers importing dask and distributed until a runner starts
    from distributed import Client

    kwargs = {"timeout": options.connect_timeout, "set_as_default": False}
    kwargs.update(options.client_kwargs)
    try:
        with dask.config.set({_internals.CLIENT_LOG_LENGTH: _CLIENT_LOG_LENGTH}):
            return Client(target, **kwargs)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        msg = (
            f"Runner 'dask' could not reach the Dask scheduler at {label} within "
            f"{options.connect_timeout} s ({type(exc).__name__}: {exc}); check that it is "
            "running and reachable, or raise `connect_timeout`."
        )
        raise BackendUnavailable(redact(msg)) from exc


def _start_cluster(options: Options) -> Any:
    import dask  # defers importing dask and distributed until a runner starts
    from distributed import LocalCluster

    factory = cluster_factory(options.cluster_class)
    kwargs = dict(options.cluster_kwargs)
    if isinstance(factory, type) and issubclass(factory, LocalCluster):
        defaults: dict[str, Any] = {
            "n_workers": default_workers(),
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
        }
        kwargs = {**defaults, **kwargs}
    kwargs = secure_kwargs(factory, kwargs, tls=options.tls)
    try:
        with dask.config.set(OWNED_CLUSTER_CONFIG):
            cluster = factory(**kwargs)
    except (ConfigError, BackendUnavailable):
        raise
    except Exception as exc:
        name = getattr(factory, "__qualname__", repr(factory))
        shown = redact_options({k: v for k, v in kwargs.items() if k != "security"})
        msg = f"Runner 'dask' could not start {name}(**{shown!r}): {type(exc).__name__}: {exc}"
        raise BackendUnavailable(redact(msg)) from exc
    if options.adapt_kwargs is not None:
        cluster.adapt(**options.adapt_kwargs)
    return cluster
