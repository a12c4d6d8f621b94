"""
The ``dask`` runner: conveyor task runs as Dask tasks, on a temporary local cluster, a cluster
class of your choice, or an existing scheduler.

This module holds the options and the orchestration; the parts live in their own modules:
the connection (``_connect``), submitting and ending runs (``_submit``, judged by ``_faults``),
stopping cancelled work (``_cancel``), the worker and scheduler sides (``_worker``,
``_scheduler``). Importing it does not import ``distributed``; :meth:`DaskRunner.on_start` does.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from conveyor import CrashReason, validators
from conveyor.exceptions import ConfigError
from conveyor.runners import Attempt, Capabilities, ConcurrencyType, Runner
from conveyor.runners.remote import pack_or_crash
from conveyor_dask._cancel import WorkerStopper
from conveyor_dask._connect import (
    OWNED_CLUSTER_CONFIG,
    Connection,
    Secession,
    connect,
    in_task_worker,
)
from conveyor_dask._handle import RunHandle
from conveyor_dask._scheduler import install_guard
from conveyor_dask._submit import Submitter, missing_resources

__all__ = ["OWNED_CLUSTER_CONFIG", "DaskRunner"]

logger = logging.getLogger("conveyor.dask")

_SUBMITTABLE = ("running", "connecting", "newly-created")


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
    - ``tls``: a ``LocalCluster`` the runner starts requires a temporary TLS certificate of
      every connection, so no other user of the machine can join it (default True).

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

    address: str | None = attrs.field(
        default=None, validator=validators.address(example="tcp://10.0.0.5:8786")
    )
    cluster_class: str | type | None = attrs.field(
        default=None,
        validator=validators.dotted_name_or_class(
            example="'distributed.LocalCluster' or 'dask_jobqueue.SLURMCluster'"
        ),
    )
    cluster_kwargs: dict[str, Any] = attrs.field(factory=dict, validator=validators.mapping())
    adapt_kwargs: dict[str, Any] | None = attrs.field(
        default=None, validator=validators.mapping(allow_none=True)
    )
    client_kwargs: dict[str, Any] = attrs.field(factory=dict, validator=validators.mapping())
    connect_timeout: float = attrs.field(default=10.0, validator=validators.seconds())
    tls: bool = attrs.field(
        default=True,
        validator=validators.Check(lambda v: isinstance(v, bool), "give true or false"),
    )

    # Live between start and stop: the connection, what submits and ends runs on it, and what
    # stops cancelled work. The thread a nested flow seceded, and its worker, outlive a start.
    _connection: Connection | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _submitter: Submitter | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _stopper: WorkerStopper | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _secession: Secession = attrs.field(factory=Secession, init=False, eq=False, repr=False)
    _nest_worker: Any = attrs.field(default=None, init=False, eq=False, repr=False)

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
        return None if self._connection is None else self._connection.client

    @property
    def cluster(self) -> Any:
        """The cluster this runner started, or None (with ``address``, or nested)."""
        return None if self._connection is None else self._connection.cluster

    @property
    def owns_cluster(self) -> bool:
        """Whether the runner started its cluster (and so may pin settings and restart workers)."""
        return self._connection is not None and self._connection.owns_cluster

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> DaskRunner:
        # An async nested flow starts the runner in another thread; secede this task thread
        # here, where Dask knows it.
        self._nest_worker = in_task_worker()
        if self._nest_worker is not None:
            self._secession.secede()
        try:
            return await super().__aenter__()
        except BaseException:
            self._secession.rejoin()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await super().__aexit__(*exc)
        finally:
            self._secession.rejoin()

    def on_start(self) -> None:
        worker = self._nest_worker or in_task_worker()
        connection = connect(self, worker, self._secession)
        self._connection = connection
        submitter = self._submitter = Submitter(connection)
        self._stopper = WorkerStopper(connection, submitter.topic, submitter.results)
        submitter.subscribe()
        install_guard(connection.client)
        link = getattr(connection.client, "dashboard_link", None)
        if connection.owns_client and link:
            logger.info("Dask dashboard: %s", link)

    def on_stop(self) -> None:
        connection = self._connection
        try:
            self._stop()
        except BaseException as exc:
            if not isinstance(exc, Exception) and connection is not None:
                connection.abandon()  # a second Ctrl-C cut the stop short
            raise

    def _stop(self) -> None:
        submitter, stopper, connection = self._submitter, self._stopper, self._connection
        if submitter is not None:
            submitter.stop()
        if stopper is not None:
            stopper.join(30)
        if submitter is not None:
            submitter.unsubscribe()
        if connection is not None:
            connection.close()
        self._connection = self._stopper = None
        self._secession.rejoin()
        leftover = submitter.take_inflight() if submitter is not None else []
        self._submitter = None
        for attempt in leftover:
            attempt.crash(
                f"Runner 'dask' stopped while {attempt.name!r} was still running.",
                reason=CrashReason.RUNNER_STOPPED,
            )

    # -- running ------------------------------------------------------------------------------

    def upstream_handle(self, attempt: Attempt) -> Any:
        """The Dask future of a running attempt, so a downstream run is submitted at once."""
        handle = attempt.handle
        return handle.future if isinstance(handle, RunHandle) else None

    def execute(self, attempt: Attempt) -> None:
        submitter = self._submitter
        if submitter is None:
            attempt.crash(
                f"Runner 'dask' stopped before {attempt.name!r} could be submitted.",
                reason=CrashReason.RUNNER_STOPPED,
            )
            return
        packed = pack_or_crash(attempt, native=submitter.native)
        if packed is None:
            return
        payload, deps = packed
        client = submitter.connection.client
        if client is None or client.status not in _SUBMITTABLE:
            attempt.crash(
                f"The Dask client is {getattr(client, 'status', 'gone')}, so {attempt.name!r} "
                "cannot be submitted; the cluster was lost.",
                reason=CrashReason.BACKEND_LOST,
            )
            return
        restrictions: dict[str, Any] = {}
        if attempt.resources:
            problem = missing_resources(client, dict(attempt.resources))
            if problem:
                attempt.crash(problem, reason=CrashReason.RESOURCES_UNAVAILABLE)
                return
            restrictions["resources"] = dict(attempt.resources)
        submitter.submit(attempt, payload, deps, restrictions)

    def cancel(self, attempt: Attempt) -> bool:
        handle = attempt.handle
        if not isinstance(handle, RunHandle):
            return True  # never submitted
        submitter, stopper = self._submitter, self._stopper
        if submitter is None or stopper is None or not submitter.mark_cancelled(handle.key):
            return True  # already ended
        return stopper.stop(handle, attempt.name)
