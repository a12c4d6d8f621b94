"""
Benchmarks of the core's budgets, each measured side by side with its baseline in one run.

    python bench/bench_core.py [--quick]

Prints one line per budget: the measured figure, the baseline, the ratio and the budget.
These are benchmarks, not tests: absolute times on a shared machine are noise; ratios are not.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from typing import Any

import anyio

from conveyor import flow, task
from conveyor.config import resolve_runner
from conveyor.plugins import get_host
from conveyor.runners import ConcurrentRunner

RESULTS: list[tuple[str, str, bool]] = []


def report(name: str, figure: str, ok: bool) -> None:
    RESULTS.append((name, figure, ok))
    print(f"{'PASS' if ok else 'OVER'}  {name}: {figure}", flush=True)


def noop() -> None:
    return None


@task
def noop_task() -> None:
    return None


@task
async def nap() -> None:
    await anyio.sleep(0.5)


def best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_sequential_overhead(n: int) -> None:
    @flow(runner="sequential")
    def submitted() -> None:
        for _ in range(n):
            noop_task.submit().result()

    @flow(runner="sequential")
    def direct() -> None:
        for _ in range(n):
            noop()

    t_conv = best(submitted, 5)
    t_raw = best(direct, 5)
    extra_us = (t_conv - t_raw) / n * 1e6
    report(
        "sequential: submit + result of a no-op vs a direct call",
        f"{extra_us:.1f} us extra per run (budget <= 20 us)",
        extra_us <= 20,
    )


def bench_concurrent_sync(n: int, workers: int) -> None:
    @flow(runner=ConcurrentRunner(max_workers=workers))
    def conv() -> None:
        futures = [noop_task.submit() for _ in range(n)]
        for f in futures:
            f.result()

    def raw() -> None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(noop) for _ in range(n)]
            for f in futures:
                f.result()

    t_conv = best(conv, 3)
    t_raw = best(raw, 3)
    ratio = t_conv / t_raw
    report(
        f"concurrent: {n:,} no-op sync tasks vs ThreadPoolExecutor(max_workers={workers})",
        f"{t_conv * 1e3:.0f} ms vs {t_raw * 1e3:.0f} ms = {ratio:.2f}x (budget <= 2x)",
        ratio <= 2,
    )


def bench_concurrent_async(n: int) -> None:
    peak = [threading.active_count()]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], threading.active_count())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    @flow(runner="concurrent")
    def naps() -> None:
        for f in [nap.submit() for _ in range(n)]:
            f.result()

    start = time.perf_counter()
    naps()
    elapsed = time.perf_counter() - start
    stop.set()
    watcher.join()
    threads = peak[0] - 1  # minus the watcher
    report(
        f"concurrent: {n:,} async tasks awaiting anyio.sleep(0.5)",
        f"{elapsed:.2f} s (budget <= 2 s), peak {threads} threads (budget <= 30)",
        elapsed <= 2 and threads <= 30,
    )


def _startup(code: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_import(repeat: int) -> None:
    bare = _startup("pass", repeat)
    imported = _startup("import conveyor", repeat)
    extra_ms = (imported - bare) * 1e3
    report(
        "import conveyor: added interpreter start time",
        f"{extra_ms:.0f} ms (median of {repeat}; bare start {bare * 1e3:.0f} ms; budget <= 60 ms)",
        extra_ms <= 60,
    )


def bench_runners_cli(repeat: int) -> None:
    imported = _startup("import conveyor", repeat)
    listed = _startup("from conveyor.cli import main; main(['runners'])", repeat)
    names = get_host().registry.names()
    ratio = listed / imported
    report(
        f"conveyor runners ({', '.join(names)}) vs python -c 'import conveyor'",
        f"{listed * 1e3:.0f} ms vs {imported * 1e3:.0f} ms = {ratio:.2f}x (budget <= 1.5x)",
        ratio <= 1.5,
    )


def bench_resolve_start_stop(n: int) -> None:
    host = get_host()
    host.load()

    def cycle() -> None:
        for _ in range(n):
            runner = resolve_runner(call="sequential", host=host).duplicate()
            runner.start()
            runner.stop()

    per_ms = best(cycle, 3) / n * 1e3
    report(
        "resolve 'sequential' by name, start and stop it",
        f"{per_ms * 1e3:.0f} us per cycle (budget < 1 ms)",
        per_ms < 1,
    )


def bench_memory(n: int) -> None:
    @flow(runner="sequential")
    def dropped() -> None:
        for _ in range(n):
            noop_task.submit()

    kept: list[Any] = []

    @flow(runner="sequential")
    def keeping() -> None:
        for _ in range(n):
            kept.append(noop_task.submit())

    dropped()  # warm up
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    dropped()
    gc.collect()
    after_dropped = tracemalloc.get_traced_memory()[0] - base
    keeping()
    gc.collect()
    after_kept = tracemalloc.get_traced_memory()[0] - base - after_dropped
    tracemalloc.stop()
    per_kept = after_kept / n
    report(
        f"memory: {n:,} finished runs whose futures were dropped",
        f"{after_dropped / 2**20:.2f} MB retained (budget < 20 MB)",
        after_dropped < 20 * 2**20,
    )
    report(
        f"memory: {n:,} kept futures of finished runs",
        f"{per_kept:.0f} bytes each (budget < 2048)",
        per_kept < 2048,
    )
    kept.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    print(f"conveyor core benchmarks on Python {sys.version.split()[0]}")
    bench_sequential_overhead(20_000 // scale)
    bench_concurrent_sync(10_000 // scale, workers=4)
    bench_concurrent_async(10_000 // scale)
    bench_import(5 if args.quick else 15)
    bench_runners_cli(5 if args.quick else 15)
    bench_resolve_start_stop(2_000 // scale)
    bench_memory(100_000 // scale)
    over = [name for name, _, ok in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(over)} within budget, {len(over)} over")
    return 0


if __name__ == "__main__":
    sys.exit(main())
