"""
Driver memory per kept run against an external scheduler (a real ``dask scheduler`` process and
two ``dask worker`` processes), for ``bench/bench_dask.py``: ``python bench/_dask_memory.py``.

Runs a flow that keeps the futures of N finished runs (after a warm-up map of the same size), and
prints one JSON line: the bytes tracemalloc sees retained per kept run, for runs returning an int
(sent back with the run's end) and a short string (left on the cluster until asked for).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

from conveyor import flow, task
from conveyor_dask import DaskRunner

N = 3000


@task
def number(i: int) -> int:
    return i


@task
def word(i: int) -> str:
    return f"w{i}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def external_cluster() -> Iterator[str]:
    """A ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1; the scheduler's address."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    py = [sys.executable, "-m"]
    procs = [
        subprocess.Popen(
            [*py, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
             address.rsplit(":", 1)[1], "--dashboard-address", "127.0.0.1:0"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    try:
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [*py, "distributed.cli.dask_worker", address, "--nthreads", "1",
                     "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        from distributed import Client  # deferred: only to wait for the workers

        with Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(30)


def per_kept(runner: Any, t: Any) -> float:
    @flow(runner=runner)
    def keep() -> float:
        futures = t.map(range(N))
        for f in futures:
            f.wait(60)
        time.sleep(0.5)  # not a synchronisation: lets the prefetcher settle before measuring
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        futures = t.map(range(N))
        for f in futures:
            f.wait(60)
        time.sleep(0.5)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        assert len(futures) == N
        return kept / N

    return keep()


def main() -> None:
    with external_cluster() as address:
        runner = DaskRunner(address=address)
        per_kept(runner, number)  # warm-up: imports, the client's buffers
        out = {"int": per_kept(runner, number), "str": per_kept(runner, word)}
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
