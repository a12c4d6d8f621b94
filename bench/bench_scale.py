"""
Scale: `.map` of no-op tasks over N and 10*N items on one runner, in one process.

    python bench/bench_scale.py --runner concurrent --items 10000
    python bench/bench_scale.py --runner dask --items 2000

Prints the time for N and 10*N items, their ratio (budget: 10x the items costs at most 12x the
time), the per-run time, and the driver's peak RSS growth while the larger map ran. The runner
is resolved by name (``sequential``, ``concurrent``); ``dask`` and ``ray`` run on one local
cluster started once for the whole benchmark. Results are fetched with ``conveyor.gather``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from _rss import PeakRSS

import conveyor
from conveyor import flow, task


@task
def inc(x: int) -> int:
    return x + 1


def run_map(runner: Any, n: int) -> float:
    @flow(runner=runner)
    def mapped() -> int:
        return sum(conveyor.gather(inc.map(range(n))))

    gc.collect()
    start = time.perf_counter()
    total = mapped()
    elapsed = time.perf_counter() - start
    assert total == n * (n + 1) // 2, "wrong results"
    return elapsed


@contextmanager
def backend(name: str, address: str | None = None) -> Iterator[Any]:
    """
    The runner to measure. Dask and Ray run on one cluster for the whole benchmark (a flow
    would otherwise start a cluster per run, and its start-up would hide the per-run cost).
    """
    if name == "dask" and address:  # a scheduler in its own process: only the client is ours
        from conveyor_dask import DaskRunner

        yield DaskRunner(address=address)
    elif name == "dask":  # the runner's default cluster: its scheduler in a process of its own
        from conveyor_dask import DaskRunner
        from conveyor_dask.cluster import LocalProcessCluster

        with LocalProcessCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster:
            yield DaskRunner(address=cluster.scheduler_address)
    elif name == "ray":
        from conveyor_ray import RayRunner

        keeper = RayRunner().start()  # keeps one local Ray up across the flows
        try:
            yield RayRunner()
        finally:
            keeper.stop()
    else:
        yield name


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runner", default="concurrent")
    parser.add_argument("--address", help="dask: an existing scheduler instead of a new cluster")
    parser.add_argument("--items", type=int, default=10_000, help="N; the large run uses 10*N")
    args = parser.parse_args()
    n = args.items
    with backend(args.runner, args.address) as runner:
        run_map(runner, min(n, 1000))  # warm up: imports, worker processes
        # Best of several runs: one short run on a shared machine is mostly noise.
        small = min(run_map(runner, n) for _ in range(3))
        with PeakRSS() as rss:
            large = min(run_map(runner, 10 * n) for _ in range(2))
    ratio = large / small
    growth = rss.growth_mb
    print(f"runner {args.runner}: {n:,} items {small:.2f} s, {10 * n:,} items {large:.2f} s")
    print(
        f"  10x items cost {ratio:.1f}x the time (budget <= 12x): {'PASS' if ratio <= 12 else 'OVER'}"
    )
    print(f"  {large / (10 * n) * 1e6:.0f} us per run at {10 * n:,} items")
    print(
        f"  driver peak RSS growth during the large map: {growth:.0f} MB ({growth * 2**20 / (10 * n):.0f} B per run)"
    )
    return 0


if __name__ == "__main__":  # Dask spawns worker processes: keep the guard
    sys.exit(main())
