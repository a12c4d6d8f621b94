"""
What the Dask tests share: values with pickling side effects, counters of task executions,
and the task bodies, flows and cluster class of ``test_more_options.py``.

Workers import this module by name (``tests.dask._support``): the driver's ``sys.path``, which
holds the repository root, travels to the worker processes the nannies spawn and to the
scheduler process. Each body records its execution as a file ``<name>.<uuid>`` in a folder, so
tests count executions across processes.
"""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path
from typing import Any, ClassVar

from distributed import LocalCluster

from conveyor import flow, task

UNPICKLED_IN: list[int] = []

#: Size of one allocation step of :func:`hog`.
CHUNK = 16 << 20


def record(folder: str | None, name: str) -> None:
    """Note one execution of the body ``name`` as a file in ``folder``."""
    if folder:
        import uuid

        (Path(folder) / f"{name}.{uuid.uuid4().hex}").write_text(str(os.getpid()))


def count_runs(folder: Path, name: str) -> int:
    """How many times a body that records ``name`` ran."""
    return len(list(folder.glob(f"{name}.*")))


def _rebuild(payload: bytes) -> Tracked:
    UNPICKLED_IN.append(os.getpid())
    return Tracked(payload)


class Tracked:
    """A value that notes every process that unpickles it (in ``UNPICKLED_IN`` there)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __reduce__(self) -> Any:
        return (_rebuild, (self.payload,))


def _explode() -> Any:
    raise RuntimeError("unpickle bomb")


class UnpickleBomb:
    """Pickles fine, raises RuntimeError when unpickled."""

    def __reduce__(self) -> Any:
        return (_explode, ())


def make_lock() -> Any:
    return threading.Lock()


def roundtrip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))


class RecordingCluster(LocalCluster):
    """A LocalCluster that notes, in the process that built it, each instance and its kwargs."""

    created: ClassVar[list[tuple[RecordingCluster, dict[str, Any]]]] = []

    def __init__(self, **kwargs: Any) -> None:
        RecordingCluster.created.append((self, dict(kwargs)))
        super().__init__(**kwargs)


@task
def hog(folder: str, mib: int, hold_seconds: float) -> int:
    """Allocate and write ``mib`` MiB (in 16 MiB steps), then keep it for ``hold_seconds``."""
    import time

    record(folder, "hog")
    chunks = []
    while len(chunks) * CHUNK < mib << 20:
        chunks.append(b"\x01" * CHUNK)  # written, so resident, not just reserved
    time.sleep(hold_seconds)  # keeps the memory; the nanny should end this process first
    return len(chunks)


@task
def innocent(folder: str, name: str) -> tuple[str, int]:
    record(folder, name)
    return name, os.getpid()


@task
def where(x: int) -> tuple[int, str, int]:
    """``x`` squared, with the address and pid of the worker that ran it."""
    from distributed import get_worker

    return x * x, get_worker().address, os.getpid()


@task
async def async_triple(x: int) -> tuple[int, int]:
    import asyncio

    await asyncio.sleep(0)
    return 3 * x, os.getpid()


def _nested_facts() -> dict[str, Any]:
    """What the nested flow's runner uses, seen from inside the nested flow on a worker."""
    import psutil
    from distributed import get_client, get_worker

    from conveyor import current_flow_run

    run = current_flow_run()
    assert run is not None
    runner = run.runner
    worker = get_worker()
    return {
        "runner": type(runner).__name__,
        "no_cluster": runner.cluster is None,
        "owns_cluster": runner.owns_cluster,
        "scheduler": runner.client.scheduler.address,
        "worker_scheduler": worker.scheduler.address,
        "is_worker_client": runner.client is get_client(),
        "worker": worker.address,
        "pid": os.getpid(),
        "children": [p.pid for p in psutil.Process().children(recursive=True)],
    }


@flow(runner="dask")
async def nested_async(x: int) -> tuple[list[int], list[int], dict[str, Any]]:
    """An async flow, meant to run inside a Dask task: two async task runs, then the facts."""
    futures = [async_triple.submit(x), async_triple.submit(x + 1)]
    results = [await f for f in futures]
    return [v for v, _ in results], [p for _, p in results], _nested_facts()


@task
async def outer_async(x: int) -> Any:
    """An async task that awaits the nested async flow."""
    return await nested_async(x)


@task
def outer_sync(x: int) -> Any:
    """A sync task that runs the nested async flow in its own event loop."""
    import asyncio

    return asyncio.run(nested_async(x))
