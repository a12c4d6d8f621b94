"""
Benchmark of the dask runner against raw ``distributed`` on the same cluster, in one run.

- 1,000 no-op runs submitted and gathered, vs ``client.submit(..., pure=False)`` + ``client.gather``
  (budget: at most 1.25x);
- a chain of 100 runs passing a 10 MB NumPy array to the next, vs the same chain of raw Dask
  futures (budget: at most 1.25x), and the driver's peak RSS growth during the chain (< 50 MB).

Run: ``python bench/bench_dask.py [--repeat N]``. Prints one line per measure and the ratios;
exits 1 if a budget is exceeded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np
from _rss import PeakRSS

import conveyor
from conveyor import flow, task

N_NOOP = 1000
CHAIN = 100
MB10 = 10 * 1024 * 1024 // 8  # float64 elements in 10 MB


def noop(i: int) -> int:
    return i


def make() -> Any:
    return np.zeros(MB10)


def step(a: Any) -> Any:
    return a + 1


def total(a: Any) -> float:
    return float(a[0])


noop_t = task(noop)
make_t = task(make)
step_t = task(step)
total_t = task(total)


def raw_noop(client: Any) -> float:
    t0 = time.perf_counter()
    futs = [client.submit(noop, i, pure=False) for i in range(N_NOOP)]
    values = client.gather(futs)
    elapsed = time.perf_counter() - t0
    assert values == list(range(N_NOOP))
    del futs
    return elapsed


def raw_chain(client: Any) -> tuple[float, float]:
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        x = client.submit(make, pure=False)
        for _ in range(CHAIN - 1):
            x = client.submit(step, x, pure=False)
        value = client.submit(total, x, pure=False).result()
        elapsed = time.perf_counter() - t0
    assert value == CHAIN - 1
    del x
    return elapsed, rss.growth_mb


def conveyor_noop(runner: Any) -> float:
    @flow(runner=runner)
    def f() -> float:
        t0 = time.perf_counter()
        futs = noop_t.map(range(N_NOOP))
        values = conveyor.gather(futs)  # one round trip, like client.gather
        elapsed = time.perf_counter() - t0
        assert values == list(range(N_NOOP))
        return elapsed

    return f()


def conveyor_chain(runner: Any) -> tuple[float, float]:
    @flow(runner=runner)
    def f() -> tuple[float, float]:
        with PeakRSS() as rss:
            t0 = time.perf_counter()
            x = make_t.submit()
            for _ in range(CHAIN - 1):
                x = step_t.submit(x)
            value = total_t.submit(x).result()
            elapsed = time.perf_counter() - t0
        assert value == CHAIN - 1
        return elapsed, rss.growth_mb

    return f()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import dask
    from distributed import Client

    from conveyor_dask import DaskRunner
    from conveyor_dask.cluster import LocalProcessCluster
    from conveyor_dask.runner import OWNED_CLUSTER_CONFIG

    # The runner's default cluster (its scheduler in a process of its own), shared by both sides.
    with dask.config.set(OWNED_CLUSTER_CONFIG):
        cluster = LocalProcessCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
    try:
        client = Client(cluster, set_as_default=False)
        runner = DaskRunner(address=cluster.scheduler_address)
        # warm up both paths (imports, worker-side function caches)
        raw_noop(client), conveyor_noop(runner), raw_chain(client), conveyor_chain(runner)
        results: dict[str, list[float]] = {
            k: [] for k in ("raw_noop", "cv_noop", "raw_chain", "cv_chain", "raw_rss", "cv_rss")
        }
        for _ in range(args.repeat):  # interleaved, so load on the shared machine hits both
            results["raw_noop"].append(raw_noop(client))
            results["cv_noop"].append(conveyor_noop(runner))
            t, m = raw_chain(client)
            results["raw_chain"].append(t)
            results["raw_rss"].append(m)
            t, m = conveyor_chain(runner)
            results["cv_chain"].append(t)
            results["cv_rss"].append(m)
        client.close()
    finally:
        cluster.close()

    med = {k: statistics.median(v) for k, v in results.items()}
    noop_ratio = med["cv_noop"] / med["raw_noop"]
    chain_ratio = med["cv_chain"] / med["raw_chain"]
    rss = max(results["cv_rss"])
    print(
        f"1,000 no-op runs  raw distributed {med['raw_noop'] * 1e3:8.1f} ms   "
        f"conveyor {med['cv_noop'] * 1e3:8.1f} ms   ratio {noop_ratio:.2f}x (budget 1.25x)"
    )
    print(
        f"chain of 100x10MB raw distributed {med['raw_chain'] * 1e3:8.1f} ms   "
        f"conveyor {med['cv_chain'] * 1e3:8.1f} ms   ratio {chain_ratio:.2f}x (budget 1.25x)"
    )
    print(
        f"driver peak RSS growth during the chain: conveyor {rss:.1f} MB (budget < 50 MB), "
        f"raw {max(results['raw_rss']):.1f} MB"
    )
    ok = noop_ratio <= 1.25 and chain_ratio <= 1.25 and rss < 50
    print("within budget" if ok else "OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
