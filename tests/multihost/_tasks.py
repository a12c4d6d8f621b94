"""Tasks the multi-host tests run: each says which host ran it (the ``MH_HOST`` of its process)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from conveyor import task


def _here() -> dict[str, Any]:
    where: dict[str, Any] = {"host": os.environ.get("MH_HOST"), "pid": os.getpid()}
    try:
        from distributed import get_worker  # deferred: only on a Dask worker

        where["worker"] = get_worker().address
    except (ImportError, ValueError):
        import ray  # deferred: only on a Ray worker

        where["worker"] = ray.get_runtime_context().get_node_id()
    return where


@task
def produce(n: int) -> dict[str, Any]:
    """A value made on one host."""
    return {**_here(), "data": list(range(n))}


@task
def consume(upstream: dict[str, Any]) -> dict[str, Any]:
    """Uses ``upstream``'s value on the host this runs on."""
    return {**_here(), "from": upstream["worker"], "sum": sum(upstream["data"])}


@task
def hold(marks: str, name: str, limit: float) -> str:
    """Mark ``name`` started, then wait (at most ``limit`` s) until the test writes ``release``."""
    folder = Path(marks)
    (folder / name).write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + limit
    while not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return name
