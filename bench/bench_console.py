"""
The console's budgets, measured side by side in one run:

- live progress on costs at most 5% on 10,000 no-op runs on ``concurrent``, and off costs
  nothing (against the same flow with the display machinery never touched);
- the run record: ``record_runs=True`` against the default summary, per run.

    python bench/bench_console.py [--quick]

The display needs a terminal: this script opens a pseudo-terminal and points stderr at it, so
rich draws for real (four frames a second) while the runs are timed.
"""

from __future__ import annotations

import argparse
import gc
import os
import pty
import sys
import threading
import time
from collections.abc import Callable

from conveyor import flow, task
from conveyor.runners import ConcurrentRunner


@task
def noop() -> None:
    return None


def _flow(n: int, **options: bool) -> Callable[[], object]:
    @flow(runner=ConcurrentRunner(max_workers=4), **options)
    def many() -> None:
        for f in [noop.submit() for _ in range(n)]:
            f.result()

    return many


def _drain(fd: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def _times(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    args = parser.parse_args()
    n, rounds = 10_000, 5 if args.quick else 15
    master, slave = pty.openpty()
    stop = threading.Event()
    reader = threading.Thread(target=_drain, args=(master, stop), daemon=True)
    reader.start()
    saved = os.dup(2)
    os.dup2(slave, 2)
    os.environ.setdefault("TERM", "xterm")
    try:
        flows = {
            "off": _flow(n, progress=False),
            "on": _flow(n, progress=True),
            "record_runs": _flow(n, progress=False, record_runs=True),
        }
        for fn in flows.values():
            fn()  # warm up
        times: dict[str, list[float]] = {k: [] for k in flows}
        for _ in range(rounds):  # interleaved, so machine noise hits all alike
            for name, fn in flows.items():
                times[name] += _times(fn, 1)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        stop.set()
        os.close(slave)
        os.close(master)
    med = {k: min(v) for k, v in times.items()}  # the best round: least disturbed by the machine
    on = med["on"] / med["off"]
    rec = (med["record_runs"] - med["off"]) / n * 1e6
    print(f"conveyor console benchmarks on Python {sys.version.split()[0]} ({rounds} rounds)")
    print(
        f"{'PASS' if on <= 1.05 else 'OVER'}  progress on vs off, {n:,} no-op runs on "
        f"concurrent: {med['on'] * 1e3:.0f} vs {med['off'] * 1e3:.0f} ms = {on:.3f}x (budget <= 1.05x)"
    )
    print(
        f"INFO  record_runs=True vs the default summary: {med['record_runs'] * 1e3:.0f} vs "
        f"{med['off'] * 1e3:.0f} ms = {rec:+.2f} us per run"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
