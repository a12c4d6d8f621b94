"""
conveyor's Ray runner against raw Ray, side by side on one Ray instance, in one run.

- 1,000 no-op runs submitted and gathered vs ``f.remote()`` + ``ray.get`` (budget <= 1.25x);
- a chain of 100 runs each passing a 10 MB NumPy array to the next vs the same chain of raw
  ObjectRefs (budget <= 1.25x, and the driver's peak RSS grows by < 50 MB).

Run: ``python bench/bench_ray.py [--repeat N]``: the medians of N rounds (7 by default; each side
goes first in every other round). Prints one JSON object; exits 1 over budget.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np
from _rss import PeakRSS

import conveyor
from conveyor import flow, task
from conveyor_ray import RayRunner

N_NOOPS = 1000
CHAIN = 100
MB10 = 10 * 1024 * 1024 // 8  # float64 elements in 10 MB


@task
def noop() -> None:
    return None


@task
def step(a: Any) -> Any:
    return a + 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    import ray

    # One Ray for both sides: the runner started here owns it, every flow below reuses it.
    keeper = RayRunner().start()
    raw_noop = ray.remote(max_retries=0)(lambda: None)
    raw_step = ray.remote(max_retries=0)(lambda a: a + 1)

    def raw_noops() -> float:
        t = time.perf_counter()
        ray.get([raw_noop.remote() for _ in range(N_NOOPS)])
        return time.perf_counter() - t

    @flow(runner=RayRunner())
    def conveyor_noops() -> float:
        t = time.perf_counter()
        futures = [noop.submit() for _ in range(N_NOOPS)]
        conveyor.gather(futures)  # like ray.get(list): remote values in one round trip
        return time.perf_counter() - t

    def raw_chain() -> tuple[float, float]:
        with PeakRSS() as rss:
            t = time.perf_counter()
            ref = ray.put(np.zeros(MB10))
            for _ in range(CHAIN):
                ref = raw_step.remote(ref)
            last = ray.get(ref)
            took = time.perf_counter() - t
        assert last[0] == CHAIN
        del last
        return took, rss.growth_mb

    @flow(runner=RayRunner())
    def conveyor_chain() -> tuple[float, float]:
        with PeakRSS() as rss:
            t = time.perf_counter()
            f = step.submit(np.zeros(MB10))
            for _ in range(CHAIN - 1):
                f = step.submit(f)
            last = f.result()
            took = time.perf_counter() - t
        assert last[0] == CHAIN
        del last
        return took, rss.growth_mb

    # Warm up both sides (worker processes, function export).
    raw_noops()
    conveyor_noops()
    results: dict[str, list[float]] = {
        k: [] for k in ("raw_noop", "cv_noop", "raw_chain", "cv_chain", "raw_rss", "cv_rss")
    }
    # Each side goes first in every other round: Ray's raylet and GCS go on digesting a batch
    # of tasks (their task events) for a while after it ends, which slows whatever runs next.
    for i in range(args.repeat):
        order = ("raw", "cv") if i % 2 == 0 else ("cv", "raw")
        for side in order:
            results[f"{side}_noop"].append(raw_noops() if side == "raw" else conveyor_noops())
        for side in order:
            took, rss = raw_chain() if side == "raw" else conveyor_chain()
            results[f"{side}_chain"].append(took)
            results[f"{side}_rss"].append(rss)
    keeper.stop()

    med = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "ray": ray.__version__,
        "repeat": args.repeat,
        "noops_raw_s": round(med["raw_noop"], 4),
        "noops_conveyor_s": round(med["cv_noop"], 4),
        "noops_ratio": round(med["cv_noop"] / med["raw_noop"], 3),
        "chain_raw_s": round(med["raw_chain"], 4),
        "chain_conveyor_s": round(med["cv_chain"], 4),
        "chain_ratio": round(med["cv_chain"] / med["raw_chain"], 3),
        "chain_raw_rss_growth_mb": round(max(results["raw_rss"]), 1),
        "chain_conveyor_rss_growth_mb": round(max(results["cv_rss"]), 1),
        "all": {k: [round(x, 4) for x in v] for k, v in results.items()},
    }
    ok = (
        report["noops_ratio"] <= 1.25
        and report["chain_ratio"] <= 1.25
        and report["chain_conveyor_rss_growth_mb"] < 50
    )
    report["within_budget"] = ok
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
