"""
Benchmarks of the ``processes`` runner, each measured side by side with its baseline in one run,
the two interleaved round by round (medians of the rounds are printed).

    python bench/bench_processes.py [--rounds N] [--quick]

- 1,000 no-op runs, ``[f.result() for f in futures]``, against
  ``concurrent.futures.ProcessPoolExecutor`` with the same workers and start method (budget:
  at most 1.5x), end to end (the flow call against the ``with`` block: pool start and shutdown
  included, each starting with no forkserver or resource tracker running, as a program does)
  and steady (the submitting and collecting only, on started workers);
- 200 runs of 5 ms of pure-Python CPU work against the ``concurrent`` runner (budget: at least
  1.8x faster on 2 cores), and against the raw pool;
- ``.map()`` of no-ops over 1,000 and 10,000 items (budget: 10x the runs at most 12x the time);
- the driver's memory per kept future of a finished run (budget: within 2 KB), and its peak
  RSS growth per run over a 20,000-run map;
- `conveyor run` interrupted mid-flow by SIGINT to its process group: time to exit 130
  (budget: 2 s), and the runner's start and stop on their own.

These are benchmarks, not tests: absolute times on a shared machine are noise; ratios less so.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _rss import PeakRSS

import conveyor
from conveyor import flow, task
from conveyor.runners import ConcurrentRunner
from conveyor.runners.processes import ProcessesRunner

WORKERS = 2
METHOD = "forkserver"
RESULTS: list[tuple[str, str, bool]] = []


def report(name: str, figure: str, ok: bool | None = None) -> None:
    if ok is not None:
        RESULTS.append((name, figure, ok))
    tag = "    " if ok is None else ("PASS" if ok else "OVER")
    print(f"{tag}  {name}: {figure}", flush=True)


def noop() -> None:
    return None


def spin(loops: int) -> int:
    """Pure-Python CPU work: ``loops`` rounds of arithmetic (no waiting, no GIL release)."""
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def loops_for(seconds: float) -> int:
    """How many rounds of :func:`spin` take ``seconds`` here, one at a time (median of 20)."""
    loops = 10_000
    for _ in range(3):  # refine on runs of about the wanted length
        took = statistics.median(timed(lambda n=loops: spin(n)) for _ in range(20))
        loops = int(loops * seconds / took)
    return loops


noop_task = task(noop)
spin_task = task(spin)


@task
def inc(x: int) -> int:
    return x + 1


def fresh_helpers() -> None:
    """Stop multiprocessing's forkserver and resource tracker, so a measure starts without."""
    from multiprocessing import forkserver, resource_tracker

    for module, name in ((forkserver, "_forkserver"), (resource_tracker, "_resource_tracker")):
        helper = getattr(module, name)
        if getattr(helper, "_forkserver_pid", None) or getattr(helper, "_pid", None):
            helper._stop()


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pool() -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(
        WORKERS, mp_context=multiprocessing.get_context(METHOD)
    )


def runner() -> ProcessesRunner:
    return ProcessesRunner(max_workers=WORKERS, start_method=METHOD)


def interleave(rounds: int, **measures: Callable[[], float]) -> dict[str, float]:
    """Each measure once per round, in an order that alternates; the median of each."""
    times: dict[str, list[float]] = {name: [] for name in measures}
    names = list(measures)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            fresh_helpers()
            times[name].append(measures[name]())
    return {name: statistics.median(values) for name, values in times.items()}


def bench_noops(n: int, rounds: int) -> None:
    def submit_all(submit: Callable[[], Any]) -> None:
        futures = [submit() for _ in range(n)]
        [f.result() for f in futures]

    @flow(runner=runner())
    def conv() -> None:
        submit_all(noop_task.submit)

    def raw() -> None:
        with pool() as ex:
            submit_all(lambda: ex.submit(noop))

    t = interleave(rounds, conv=lambda: timed(conv), raw=lambda: timed(raw))
    ratio = t["conv"] / t["raw"]
    report(
        f"{n:,} no-op runs, end to end, vs ProcessPoolExecutor({WORKERS}, {METHOD})",
        f"{t['conv'] * 1e3:.0f} vs {t['raw'] * 1e3:.0f} ms = {ratio:.2f}x (budget <= 1.5x)",
        ratio <= 1.5,
    )

    @flow(runner=runner())
    def conv_steady() -> float:  # the body starts once every worker is ready
        return timed(lambda: submit_all(noop_task.submit))

    def raw_steady() -> float:
        with pool() as ex:
            [f.result() for f in [ex.submit(time.sleep, 0.1) for _ in range(WORKERS)]]
            return timed(lambda: submit_all(lambda: ex.submit(noop)))

    s = interleave(rounds, conv=conv_steady, raw=raw_steady)
    ratio = s["conv"] / s["raw"]
    report(
        f"{n:,} no-op runs, steady (workers started), vs ProcessPoolExecutor",
        f"{s['conv'] * 1e3:.0f} vs {s['raw'] * 1e3:.0f} ms = {ratio:.2f}x "
        f"({(s['conv'] - s['raw']) / n * 1e6:.0f} us more per run)",
    )


def bench_cpu(n: int, rounds: int) -> None:
    loops = loops_for(0.005)

    def submit_all(submit: Callable[[], Any]) -> None:
        futures = [submit() for _ in range(n)]
        [f.result() for f in futures]

    @flow(runner=runner())
    def conv() -> None:
        submit_all(lambda: spin_task.submit(loops))

    @flow(runner=ConcurrentRunner())
    def threads() -> None:
        submit_all(lambda: spin_task.submit(loops))

    def raw() -> None:
        with pool() as ex:
            submit_all(lambda: ex.submit(spin, loops))

    @flow(runner=runner())
    def conv_steady() -> float:  # the body starts once every worker is ready
        return timed(lambda: submit_all(lambda: spin_task.submit(loops)))

    t = interleave(
        rounds,
        conv=lambda: timed(conv),
        threads=lambda: timed(threads),
        raw=lambda: timed(raw),
        steady=conv_steady,
    )
    one = statistics.median(timed(lambda: spin(loops)) for _ in range(20))
    speedup = t["threads"] / t["conv"]
    report(
        f"{n} runs of {one * 1e3:.1f} ms CPU, end to end (runner start and stop included), "
        "vs the concurrent runner",
        f"{t['conv'] * 1e3:.0f} vs {t['threads'] * 1e3:.0f} ms = {speedup:.2f}x faster "
        "(budget >= 1.8x)",
        speedup >= 1.8,
    )
    steady = t["threads"] / t["steady"]
    report(
        f"{n} runs of {one * 1e3:.1f} ms CPU, steady (workers started), vs the concurrent runner",
        f"{t['steady'] * 1e3:.0f} vs {t['threads'] * 1e3:.0f} ms = {steady:.2f}x faster "
        "(budget >= 1.8x)",
        steady >= 1.8,
    )
    report(
        f"{n} runs of 5 ms CPU, end to end, vs ProcessPoolExecutor({WORKERS}, {METHOD})",
        f"{t['conv'] * 1e3:.0f} vs {t['raw'] * 1e3:.0f} ms = {t['conv'] / t['raw']:.2f}x",
    )


def bench_scale(n: int, rounds: int) -> None:
    def mapped(items: int) -> Callable[[], float]:
        @flow(runner=runner())
        def body() -> float:
            return timed(lambda: [f.result() for f in inc.map(range(items))])

        return body

    t = interleave(rounds, small=mapped(n), large=mapped(10 * n))
    ratio = t["large"] / t["small"]
    report(
        f".map() of {n:,} -> {10 * n:,} no-op runs (in the flow body)",
        f"{t['small'] * 1e3:.0f} -> {t['large'] * 1e3:.0f} ms = {ratio:.1f}x "
        f"({t['large'] / (10 * n) * 1e6:.0f} us per run; budget <= 12x)",
        ratio <= 12,
    )


def bench_memory(n: int) -> None:
    kept: list[Any] = []

    @flow(runner=runner())
    def keeping(items: int) -> None:
        kept.extend(noop_task.submit() for _ in range(items))
        for f in kept:
            f.result()

    keeping(100)  # warm up
    kept.clear()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    keeping(n)
    gc.collect()
    per_kept = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    kept.clear()
    report(
        f"driver memory per kept future of a finished run ({n:,} kept)",
        f"{per_kept:.0f} bytes (budget < 2048)",
        per_kept < 2048,
    )

    @flow(runner=runner())
    def big(items: int) -> int:
        return sum(conveyor.gather(inc.map(range(items))))

    big(1000)
    with PeakRSS() as rss:
        assert big(20_000) == sum(range(1, 20_001))
    per_run = rss.growth_mb * 2**20 / 20_000
    report(
        "driver peak RSS growth over a 20,000-run map (futures kept)",
        f"{rss.growth_mb:.1f} MB = {per_run:.0f} B per run (budget < 2048)",
        per_run < 2048,
    )


LONG = """
import pathlib, time
from conveyor import flow, task

@task
def slow(i):
    pathlib.Path(f"started-{i}").touch()
    time.sleep(120)

@flow
def long():
    for f in slow.map(range(4)):
        f.result()
"""


def bench_interrupt(rounds: int) -> None:
    took = []
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "pipeline.py").write_text(LONG)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        for _ in range(rounds):
            for marker in Path(folder).glob("started-*"):
                marker.unlink()
            proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "run", "pipeline.py:long", "-r", "processes"],
                cwd=folder,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + 60
            while len(list(Path(folder).glob("started-*"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            start = time.perf_counter()
            os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(60)
            took.append(time.perf_counter() - start)
            assert code == 130, code
    worst = max(took)
    report(
        "`conveyor run` mid-flow, SIGINT to its process group, until it exited 130",
        f"median {statistics.median(took):.2f} s, worst {worst:.2f} s of {rounds} (budget 2 s)",
        worst <= 2,
    )

    def start_stop() -> float:
        return timed(lambda: runner().start().stop())

    t = interleave(rounds, cycle=start_stop)
    report(
        f"start and stop a {WORKERS}-worker runner, no forkserver running before",
        f"{t['cycle'] * 1e3:.0f} ms",
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per measure")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    print(
        f"processes runner benchmarks on Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{WORKERS} workers, start method {METHOD}, medians of {rounds} rounds"
    )
    bench_noops(1000, rounds)
    bench_cpu(200, rounds)
    bench_scale(1000, rounds)
    bench_memory(10_000)
    bench_interrupt(rounds)
    over = [name for name, _, ok in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(over)} within budget, {len(over)} over")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
