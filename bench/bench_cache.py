"""
Benchmarks of caching's budgets, each measured side by side with its baseline in one run.

    python bench/bench_cache.py [--dask] [--ray] [--repeat N]

1. caching off: per-run time of a flow whose tasks are not cached, with the flow's cache
   settings present (the shipped path) and with none at all: the two must match (ratio ~1.0).
2. a cache hit on a local store, per run, for a small value (budget 300 us).
3. with --dask / --ray: 1,000 cache hits vs 1,000 raw no-op tasks on that backend (budget 1.25x).
4. a resumed 10,000-run flow of which 6,000 completed, vs the full run (budget 45%).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from conveyor import flow, task, unmapped

N_RUNS = 2_000
N_REMOTE = 1_000
N_RESUME = 10_000
DONE = 6_000


@task
def plain(i: int) -> int:
    return i


@task(cache=True)
def cached(i: int, salt: str = "") -> int:
    return i


@task(cache=True)
def working(i: int, salt: str = "") -> int:
    end = time.perf_counter() + 0.001  # 1 ms of work (busy), as a small real task has
    while time.perf_counter() < end:
        pass
    return i


def _timed_flow(runner: Any, fn: Any, n: int, *, salt: str = "", cache_off: bool = False) -> float:
    @flow(runner=runner)
    def body() -> float:
        t0 = time.perf_counter()
        futures = fn.map(range(n)) if fn is plain else fn.map(range(n), unmapped(salt))
        for f in futures:
            f.result()
        return time.perf_counter() - t0

    run = body.create_run()
    if cache_off:
        run.cache = None  # no cache settings at all: the engine's path before caching existed
    value: float = run.run().result()
    return value


def bench_off(repeat: int) -> bool:
    shipped: list[float] = []
    none: list[float] = []
    _timed_flow("sequential", plain, N_RUNS)  # warm up
    for r in range(repeat):  # interleaved, in alternating order, so load hits both alike
        for off in (False, True) if r % 2 else (True, False):
            (none if off else shipped).append(
                _timed_flow("sequential", plain, N_RUNS, cache_off=off)
            )
    a, b = statistics.median(shipped), statistics.median(none)
    print(
        f"caching off: {a / N_RUNS * 1e6:6.1f} us/run with the cache settings, "
        f"{b / N_RUNS * 1e6:6.1f} us/run without: ratio {a / b:.2f}x (budget: no change)"
    )
    return a / b <= 1.10


def bench_hit(repeat: int) -> bool:
    hits, misses = [], []
    for r in range(repeat):
        salt = f"hit-{r}-{os.getpid()}"
        misses.append(_timed_flow("sequential", cached, N_RUNS, salt=salt))
        hits.append(_timed_flow("sequential", cached, N_RUNS, salt=salt))
    plain_t = statistics.median(_timed_flow("sequential", plain, N_RUNS) for _ in range(repeat))
    hit = statistics.median(hits) / N_RUNS
    print(
        f"local store: cache hit {hit * 1e6:6.1f} us/run (budget 300 us); first run (miss + "
        f"write) {statistics.median(misses) / N_RUNS * 1e6:6.1f} us/run; uncached "
        f"{plain_t / N_RUNS * 1e6:6.1f} us/run"
    )
    return hit <= 300e-6


def bench_remote(name: str, runner: Any, raw: Any, repeat: int) -> bool:
    hits, raws = [], []
    salt = f"{name}-{os.getpid()}"
    _timed_flow(runner, cached, N_REMOTE, salt=salt)  # fill the store
    for _ in range(repeat):
        raws.append(raw())
        hits.append(_timed_flow(runner, cached, N_REMOTE, salt=salt))
    a, b = statistics.median(hits), statistics.median(raws)
    print(
        f"{name}: 1,000 cache hits {a * 1e3:7.1f} ms, 1,000 raw no-op tasks {b * 1e3:7.1f} ms: "
        f"ratio {a / b:.2f}x (budget 1.25x)"
    )
    return a / b <= 1.25


def bench_resume(repeat: int, fn: Any, label: str) -> bool:
    fulls, resumed = [], []
    for r in range(repeat):
        salt = f"resume-{label}-{r}-{os.getpid()}"
        fulls.append(_timed_flow("sequential", fn, N_RESUME, salt=salt + "-full"))
        _timed_flow("sequential", fn, DONE, salt=salt)  # the 6,000 that completed
        resumed.append(_timed_flow("sequential", fn, N_RESUME, salt=salt))
    a, b = statistics.median(resumed), statistics.median(fulls)
    print(
        f"resume ({label}): 10,000-run flow with 6,000 done {a:6.2f} s, full run {b:6.2f} s: "
        f"{a / b * 100:4.1f}% (budget 45%)"
    )
    return a / b <= 0.45


def _dask(repeat: int) -> bool:
    import dask
    from distributed import Client

    from conveyor_dask import DaskRunner
    from conveyor_dask.cluster import LocalProcessCluster
    from conveyor_dask.runner import OWNED_CLUSTER_CONFIG

    with dask.config.set(OWNED_CLUSTER_CONFIG):
        cluster = LocalProcessCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        )
    try:
        client = Client(cluster, set_as_default=False)

        def raw() -> float:
            t0 = time.perf_counter()
            client.gather([client.submit(int, i, pure=False) for i in range(N_REMOTE)])
            return time.perf_counter() - t0

        raw()
        ok = bench_remote("dask", DaskRunner(address=cluster.scheduler_address), raw, repeat)
        client.close()
        return ok
    finally:
        cluster.close()


def _ray(repeat: int) -> bool:
    import ray

    from conveyor_ray import RayRunner

    # One Ray for both sides: the runner started here owns it, the flows below reuse it.
    keeper = RayRunner().start()
    try:
        noop = ray.remote(max_retries=0)(lambda i: i)

        def raw() -> float:
            t0 = time.perf_counter()
            ray.get([noop.remote(i) for i in range(N_REMOTE)])
            return time.perf_counter() - t0

        raw()
        return bench_remote("ray", RayRunner(), raw, repeat)
    finally:
        keeper.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dask", action="store_true")
    parser.add_argument("--ray", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:
        os.environ["CONVEYOR_RESULT_STORE"] = store
        ok = bench_off(args.repeat)
        ok = bench_hit(args.repeat) and ok
        ok = bench_resume(args.repeat, cached, "no-op tasks") and ok
        ok = bench_resume(args.repeat, working, "1 ms tasks") and ok
        if args.dask:
            ok = _dask(args.repeat) and ok
        if args.ray:
            ok = _ray(args.repeat) and ok
    print("within budget" if ok else "OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
