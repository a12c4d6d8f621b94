"""
One side of ``bench/bench_dask.py``, in a fresh process: ``python bench/_dask_shapes.py SETUP SHAPE``.

SETUP is ``raw`` (``distributed.LocalCluster(n_workers=2, threads_per_worker=1)``, ``submit(...,
pure=False)`` + ``client.gather``), ``cv-default`` (``runner="dask"``, no options), ``cv-local``
(the dask runner on ``cluster_class="distributed.LocalCluster"`` with the same two workers),
``thr-cv`` (``runner="concurrent"``) or ``thr-tpe`` (``ThreadPoolExecutor(8)``). SHAPE is how the
conveyor side collects its results: ``results`` (``[f.result() for f in futures]``), ``map``
(``task.map`` then the same loop), ``as_completed`` or ``gather`` (``conveyor.gather``).

Each workload runs a small batch to warm up, then one measured batch (two for the CPU runs and the
chains: the better one counts). Prints
one JSON line: seconds from the cluster's creation to the first result, and seconds per batch.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import distributed
import numpy as np
from _rss import PeakRSS

import conveyor
from conveyor import flow, task

N_NOOP = 1000
N_CPU = 200
N_CHAIN = 40
N_WARM = 50  # runs of the warm-up batch of the no-ops and of the CPU runs
MB1 = 1024 * 1024 // 8  # float64 elements in 1 MB
CPU_LOOP = 66_000  # about 5 ms of pure-Python work on the development machine


def noop(i: int) -> int:
    return i


def cpu(i: int) -> int:
    x = i
    for j in range(CPU_LOOP):
        x = (x * 31 + j) % 1_000_003
    return x


def load(i: int) -> Any:
    return np.full(MB1, float(i))


def transform(a: Any) -> Any:
    return a * 2.0


def reduce_(a: Any) -> float:
    return float(a[0])


noop_t, cpu_t, load_t, transform_t, reduce_t = (
    task(noop),
    task(cpu),
    task(load),
    task(transform),
    task(reduce_, name="reduce"),
)


def _collect(futures: list[Any], shape: str) -> list[Any]:
    if shape in ("results", "map"):
        return [f.result() for f in futures]
    if shape == "as_completed":
        done = {id(f): f.result() for f in conveyor.as_completed(futures)}
        return [done[id(f)] for f in futures]
    return list(conveyor.gather(futures))


def _fan(t: Any, shape: str, n: int) -> list[Any]:
    if shape == "map":
        return _collect(t.map(range(n)), shape)
    return _collect([t.submit(i) for i in range(n)], shape)


def _chains(shape: str) -> list[Any]:
    if shape == "map":
        reduced = reduce_t.map(transform_t.map(load_t.map(range(N_CHAIN))))
    else:
        reduced = [reduce_t.submit(transform_t.submit(load_t.submit(i))) for i in range(N_CHAIN)]
    return _collect(reduced, shape)


def _timed(
    fn: Callable[[], Any], expect: Any, warm: Callable[[], Any] | None = None, batches: int = 1
) -> float:
    """The best time of ``batches`` measured batches of ``fn``, after a warm-up batch."""
    (warm or fn)()
    best = float("inf")
    for _ in range(batches):
        t0 = time.perf_counter()
        values = fn()
        best = min(best, time.perf_counter() - t0)
        assert values == expect, (values[:5], expect[:5])
    return best


def _expect(workload: str) -> list[Any]:
    if workload == "noop":
        return list(range(N_NOOP))
    if workload == "cpu":
        return [cpu(i) for i in range(N_CPU)]
    return [2.0 * i for i in range(N_CHAIN)]


def _workloads(
    fan: Callable[[Callable[..., Any], int], list[Any]], chains: Callable[[], list[Any]]
) -> dict[str, float]:
    out = {
        "noop": _timed(lambda: fan(noop, N_NOOP), _expect("noop"), lambda: fan(noop, N_WARM)),
        "cpu": _timed(lambda: fan(cpu, N_CPU), _expect("cpu"), lambda: fan(cpu, N_WARM), 2),
    }
    with PeakRSS() as rss:
        out["chain"] = _timed(chains, _expect("chain"), batches=2)
    out["chain_rss_mb"] = rss.growth_mb
    return out


def run_raw() -> dict[str, float]:
    t0 = time.perf_counter()
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.submit(noop, 0, pure=False).result()
        start = time.perf_counter() - t0

        def fan(fn: Callable[..., Any], n: int) -> list[Any]:
            return list(client.gather([client.submit(fn, i, pure=False) for i in range(n)]))

        def chains() -> list[Any]:
            sub = client.submit
            futs = [
                sub(reduce_, sub(transform, sub(load, i, pure=False), pure=False), pure=False)
                for i in range(N_CHAIN)
            ]
            return list(client.gather(futs))

        out = _workloads(fan, chains)
    out["start"] = start
    return out


def run_conveyor(runner: Any, shape: str) -> dict[str, float]:
    tasks = {noop: noop_t, cpu: cpu_t}
    t0 = time.perf_counter()

    @flow(runner=runner)
    def bench() -> dict[str, float]:
        noop_t.submit(0).result()
        start = time.perf_counter() - t0
        out = _workloads(lambda fn, n: _fan(tasks[fn], shape, n), lambda: _chains(shape))
        out["start"] = start
        return out

    return bench()


def run_threads(side: str) -> dict[str, float]:
    import concurrent.futures  # deferred: only this side needs it

    if side == "thr-tpe":

        def fan(fn: Callable[..., Any], n: int) -> list[Any]:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                return [f.result() for f in [pool.submit(fn, i) for i in range(n)]]

        return {"cpu": _timed(lambda: fan(cpu, N_CPU), _expect("cpu"), batches=2)}

    @flow(runner="concurrent")
    def bench() -> dict[str, float]:
        return {"cpu": _timed(lambda: _fan(cpu_t, "results", N_CPU), _expect("cpu"), batches=2)}

    return bench()


def main(setup: str, shape: str) -> None:
    if setup == "raw":
        out = run_raw()
    elif setup == "cv-default":
        out = run_conveyor("dask", shape)
    elif setup == "cv-local":
        from conveyor_dask import DaskRunner  # deferred: only this side needs it

        runner = DaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1},
        )
        out = run_conveyor(runner, shape)
    else:
        out = run_threads(setup)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "results")
