"""
Every internal of ``distributed`` the plugin relies on: attributes, classes and event shapes
that are not part of its documented API, each read or written only here (or, for the two
methods :class:`~conveyor_dask.cluster.LocalProcessCluster` overrides, listed here).

:data:`INTERNALS` names each one with the ``distributed`` version it was checked against and
why no public API serves. ``tests/dask/test_upstream.py`` runs :func:`missing` on the driver, a
worker, the scheduler and a cluster, and fails naming whatever disappeared or changed shape.
The plugin's ``pyproject.toml`` lists them too: keep the three in step.

Importing this module imports nothing from ``distributed``; the accessors take the live objects.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
from collections.abc import Callable
from typing import Any

import attrs

__all__ = [
    "CLIENT_LOG_LENGTH",
    "INTERNALS",
    "MEMORY_RESTART_TOPIC",
    "Internal",
    "closed_client_error",
    "drop_scheduler_comm",
    "forbid_recompute",
    "forget_workers",
    "has_plugin",
    "in_process_scheduler_options",
    "killed_worker_address",
    "memory_restart_rss",
    "missing",
    "missing_on_scheduler",
    "missing_on_worker",
    "send_now",
    "skip_close_at_exit",
    "stop_loop_thread",
    "stream_closed",
    "use_scheduler",
    "was_written",
    "worker_loop",
    "worker_pids",
    "worker_scheduler_address",
]

#: The version every entry below was checked against.
CHECKED = "2026.8.0"


@attrs.frozen
class Internal:
    """One internal of ``distributed``: where it is used, the version checked, why it is used."""

    name: str
    side: str  # where it can be looked at: driver, worker, scheduler or cluster
    why: str
    present: Callable[[Any], bool] = attrs.field(repr=False)
    checked: str = CHECKED


# -- worker side: the start announcement (conveyor_dask._worker._announce_start) ----------


def send_now(worker: Any, msg: dict[str, Any]) -> Any:
    """Queue ``msg`` on the worker's stream to the scheduler, ask it to send at once; the stream."""
    worker.batched_send(msg)
    stream = worker.batched_stream
    stream.next_deadline = None  # send now, not at the end of the batching interval
    stream.waker.set()
    return stream


def was_written(stream: Any, msg: dict[str, Any]) -> bool:
    """Whether one of the stream's last batches holds ``msg``: its write completed."""
    for batch in itertools.islice(reversed(stream.recent_message_log), 4):
        if isinstance(batch, list) and any(m is msg for m in batch):
            return True
    return False


def stream_closed(stream: Any) -> bool:
    """Whether the stream has no open connection (nothing more will be written)."""
    comm = stream.comm
    return comm is None or bool(comm.closed())


def worker_loop(worker: Any) -> Any:
    """The worker's event loop (``add_callback``, ``call_later``)."""
    return worker.loop


def worker_scheduler_address(worker: Any) -> str:
    """The address of the scheduler ``worker`` reports to."""
    return str(worker.scheduler.address)


# -- scheduler side: the lost-result guard (conveyor_dask._scheduler) -------------------------


def has_plugin(scheduler: Any, name: str) -> bool:
    """Whether the scheduler has a plugin registered under ``name``."""
    return name in scheduler.plugins


def forbid_recompute(scheduler: Any, key: str) -> bool:
    """Mark the task ``key`` as having lost its inputs, so Dask forgets it instead of rerunning it."""
    ts = scheduler.tasks.get(key)
    if ts is None:
        return False
    ts.has_lost_dependencies = True
    return True


# -- driver side ----------------------------------------------------------------------------


#: The config key that sets how many sent batches a ``BatchedSend`` keeps (the client's too).
CLIENT_LOG_LENGTH = "distributed.admin.low-level-log-length"

#: The topic under which a nanny logs that it restarted its worker for its memory.
MEMORY_RESTART_TOPIC = "worker-restart-memory"


def memory_restart_rss(msg: Any, address: str) -> float | None:
    """The memory (bytes) in a nanny's memory-restart event if it is about ``address``."""
    if isinstance(msg, dict) and msg.get("worker") == address:
        return float(msg.get("rss") or 0.0)
    return None


def killed_worker_address(exc: BaseException) -> str | None:
    """The address of the last worker that died running the task of a ``KilledWorker``."""
    return getattr(getattr(exc, "last_worker", None), "address", None)


def closed_client_error() -> type[Exception]:
    """What a closed client raises on submit."""
    from distributed.client import ClosedClientError  # defers importing distributed

    return ClosedClientError


# -- cluster side: conveyor_dask.cluster.LocalProcessCluster ----------------------------------


def stop_loop_thread(cluster: Any) -> None:
    """Stop the event-loop thread a cluster left running when its start failed."""
    runner = getattr(cluster, "_loop_runner", None)
    if runner is not None:
        runner.stop()


def in_process_scheduler_options(cluster: Any, scheduler_class: type) -> dict[str, Any] | None:
    """The options of the cluster's scheduler spec if it is ``scheduler_class``, not started."""
    spec = cluster.scheduler_spec
    if cluster.scheduler is None and spec is not None and spec.get("cls") is scheduler_class:
        return dict(spec.get("options", {}))
    return None


def use_scheduler(cluster: Any, scheduler_class: type, options: dict[str, Any]) -> None:
    """Have the cluster start ``scheduler_class(**options)`` as its scheduler."""
    cluster.scheduler_spec = {"cls": scheduler_class, "options": options}


async def drop_scheduler_comm(cluster: Any) -> None:
    """Close and forget the cluster's connection to its scheduler."""
    comm, cluster.scheduler_comm = cluster.scheduler_comm, None
    if comm is not None:
        await comm.close_rpc()


def forget_workers(cluster: Any) -> list[Any]:
    """Take the cluster's workers (nannies) out of its tables, so its close leaves them alone."""
    workers = list(cluster.workers.values())
    cluster.workers.clear()
    cluster.worker_spec.clear()
    return workers


def worker_pids(cluster: Any) -> list[Any]:
    """The PIDs of the cluster's worker processes (a nanny's ``pid``; None where unknown)."""
    return [getattr(nanny, "pid", None) for nanny in list(cluster.workers.values())]


def skip_close_at_exit(cluster: Any) -> None:
    """Keep distributed's exit handler from closing the cluster again (and waiting up to 10 s)."""
    cluster.shutdown_on_close = False


# -- the list ---------------------------------------------------------------------------------


def _attrs(obj: Any, *names: str) -> bool:
    return all(hasattr(obj, n) for n in names)


def _class(module: str, name: str, *fields: str) -> Callable[[Any], bool]:
    """A probe: ``module.name`` is a class with ``fields``."""

    def present(_obj: Any) -> bool:
        cls = getattr(importlib.import_module(module), name, None)
        return isinstance(cls, type) and _attrs(cls, *fields)

    return present


def _overridden_methods(_obj: Any) -> bool:
    from distributed.deploy.spec import SpecCluster  # defers importing distributed

    return all(
        inspect.iscoroutinefunction(getattr(SpecCluster, n, None)) for n in ("_start", "_close")
    )


def _default_config(_obj: Any) -> bool:
    import dask.config  # defers importing dask

    return isinstance(dask.config.get(CLIENT_LOG_LENGTH, None), int)


INTERNALS: tuple[Internal, ...] = (
    Internal(
        "Worker.batched_send",
        "worker",
        "log_event() builds its own message; the announcement must find its own one again",
        lambda w: callable(getattr(w, "batched_send", None)),
    ),
    Internal(
        "Worker.batched_stream.next_deadline, .waker",
        "worker",
        "no public call sends the worker's batch now instead of at the end of its interval",
        lambda w: _attrs(w.batched_stream, "next_deadline", "waker"),
    ),
    Internal(
        "Worker.batched_stream.recent_message_log",
        "worker",
        "no public signal says that a batch was handed to the OS (a dying body takes the rest)",
        lambda w: _attrs(w.batched_stream.recent_message_log, "__reversed__", "append"),
    ),
    Internal(
        "Worker.batched_stream.comm",
        "worker",
        "tells a closed stream (stop waiting) from a slow one",
        lambda w: _attrs(w.batched_stream, "comm") and _attrs(w.batched_stream.comm, "closed"),
    ),
    Internal(
        "Worker.loop",
        "worker",
        "the announcement runs on the worker's event loop, which owns the stream",
        lambda w: _attrs(w.loop, "add_callback", "call_later"),
    ),
    Internal(
        "Worker.scheduler.address",
        "worker",
        "tells whether a nested flow's address is its own worker's scheduler",
        lambda w: isinstance(w.scheduler.address, str),
    ),
    Internal(
        "Scheduler.plugins",
        "scheduler",
        "register_plugin() would replace a guard already there on every runner start",
        lambda s: isinstance(s.plugins, dict),
    ),
    Internal(
        "Scheduler.tasks[key].has_lost_dependencies",
        "scheduler",
        "no public way keeps Dask from recomputing a completed task whose result was lost",
        lambda s: (
            _class("distributed.scheduler", "TaskState", "has_lost_dependencies")(s)
            and isinstance(s.tasks, dict)
        ),
    ),
    Internal(
        "KilledWorker.last_worker.address",
        "driver",
        "the public exception says which worker died only in its message text",
        _class("distributed.scheduler", "KilledWorker", "last_worker"),
    ),
    Internal(
        "WorkerState.address",
        "driver",
        "what KilledWorker.last_worker is (a scheduler-side record)",
        _class("distributed.scheduler", "WorkerState", "address"),
    ),
    Internal(
        "distributed.client.ClosedClientError",
        "driver",
        "not exported at the top level; it is how a closed client refuses a submit",
        _class("distributed.client", "ClosedClientError"),
    ),
    Internal(
        f"config {CLIENT_LOG_LENGTH}",
        "driver",
        "the only bound on the payloads a client's stream keeps (1,000 batches by default)",
        _default_config,
    ),
    Internal(
        f"nanny event {MEMORY_RESTART_TOPIC!r} with 'worker' and 'rss'",
        "driver",
        "KilledWorker does not say that the nanny restarted the worker for its memory; "
        "only an out-of-memory run shows it (tests/dask/test_more_options.py::TestMemoryLimit)",
        lambda _d: True,
    ),
    Internal(
        "SpecCluster._start, SpecCluster._close",
        "driver",
        "LocalCluster builds its scheduler spec and starts at once: the only place to swap "
        "the scheduler for a process, and to close when that process died",
        _overridden_methods,
    ),
    Internal(
        "SpecCluster.scheduler_spec, .scheduler_comm, .workers, .worker_spec",
        "cluster",
        "read and changed by the two overridden methods above",
        lambda c: _attrs(c, "scheduler_spec", "scheduler_comm", "workers", "worker_spec"),
    ),
    Internal(
        "Cluster._loop_runner",
        "cluster",
        "SpecCluster leaves its event-loop thread running when its start fails",
        lambda c: _attrs(getattr(c, "_loop_runner", None), "stop"),
    ),
    Internal(
        "SpecCluster.shutdown_on_close",
        "cluster",
        "distributed's exit handler reads it; after an interrupted close it would wait 10 s",
        lambda c: isinstance(getattr(c, "shutdown_on_close", None), bool),
    ),
)


def missing(side: str, obj: Any = None) -> list[str]:
    """
    The internals used on ``side`` that ``obj`` (a worker, the scheduler or a cluster; nothing
    for the driver) lacks, each named with the version it was checked against.
    """
    gone = []
    for internal in INTERNALS:
        if internal.side != side:
            continue
        try:
            ok = internal.present(obj)
        except Exception:
            ok = False
        if not ok:
            gone.append(f"{internal.name} (checked against distributed {internal.checked})")
    return gone


def missing_on_worker(dask_worker: Any) -> list[str]:
    """:func:`missing` for ``client.run`` (which passes the worker)."""
    return missing("worker", dask_worker)


def missing_on_scheduler(dask_scheduler: Any) -> list[str]:
    """:func:`missing` for ``client.run_on_scheduler`` (which passes the scheduler)."""
    return missing("scheduler", dask_scheduler)
