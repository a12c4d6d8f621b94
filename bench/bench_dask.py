"""
The dask runner in the code users write, against ``distributed`` as users write it, in one run.

    python bench/bench_dask.py [--rounds N] [--shapes results,map,as_completed,gather]

Compares, interleaved, each side in a fresh process per round (``bench/_dask_shapes.py``):

- conveyor's defaults (``runner="dask"``, no options) against distributed's defaults
  (``LocalCluster(n_workers=2, threads_per_worker=1)``, ``client.submit(f, x, pure=False)``
  then ``client.gather``);
- conveyor on an explicit ``LocalCluster`` (``cluster_class="distributed.LocalCluster"``, the
  same two workers) against the same raw Dask;

each with the code shapes ``[f.result() for f in futures]``, ``.map()``, ``as_completed`` and
``conveyor.gather``, on three workloads: 1,000 no-ops, 200 runs of 5 ms of pure-Python CPU work,
and 40 chains load -> transform -> reduce passing 1 MB NumPy arrays as futures (the data stays on
the workers: the driver's RSS growth is printed). Also the default cluster's start-to-first-result
against ``LocalCluster``'s, ``runner="concurrent"`` on 200 x 5 ms against
``ThreadPoolExecutor(8)``, and the driver's memory per kept run against an external scheduler
(``bench/_dask_memory.py``).

Prints a table of medians with each budget and PASS/FAIL; exits 1 if a budget is exceeded.
Absolute times on a shared machine are noise; the ratios, interleaved, much less so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHAPES = ("results", "map", "as_completed", "gather")
#: workload -> (label, budget as a ratio to raw)
BUDGETS = {
    "noop": ("1,000 no-ops", 1.15),
    "cpu": ("200 x 5 ms CPU", 1.05),
    "chain": ("40 chains of 1 MB", 1.10),
}
START_BUDGET = 1.2
THREADS_BUDGET = 1.05
MEMORY_BUDGET = 2048


def _side(setup: str, shape: str) -> dict[str, float]:
    script = "_dask_memory.py" if setup == "memory" else "_dask_shapes.py"
    proc = subprocess.run(
        [sys.executable, str(HERE / script), setup, shape],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, float] = json.loads(line[len("RESULT ") :])
            return result
    msg = f"{setup} {shape} printed no result (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    raise RuntimeError(msg)


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    args = parser.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]

    sides = [("raw", "-")] + [(c, s) for c in ("cv-default", "cv-local") for s in shapes]
    sides += [("thr-tpe", "-"), ("thr-cv", "-")]
    got: dict[tuple[str, str], list[dict[str, float]]] = {side: [] for side in sides}
    print(f"start: {_load()}", flush=True)
    for r in range(args.rounds):
        # Interleaved: each round runs every side once, in an order rotated by the round.
        order = sides[r % len(sides) :] + sides[: r % len(sides)]
        for side in order:
            got[side].append(_side(*side))
        print(f"round {r + 1}/{args.rounds} done: {_load()}", flush=True)

    def med(side: tuple[str, str], key: str) -> float:
        return statistics.median(x[key] for x in got[side])

    rows: list[tuple[str, str, float, float, float]] = []
    raw = ("raw", "-")
    for setup, label in (("cv-default", "defaults vs defaults"), ("cv-local", "LocalCluster")):
        for key, (what, budget) in BUDGETS.items():
            for shape in shapes:
                cv, base = med((setup, shape), key), med(raw, key)
                rows.append((f"{label}: {what}", shape, base, cv, budget))
    s_cv, s_raw = med(("cv-default", shapes[0]), "start"), med(raw, "start")
    rows.append(("default cluster start-to-first-result", "-", s_raw, s_cv, START_BUDGET))
    t_cv, t_raw = med(("thr-cv", "-"), "cpu"), med(("thr-tpe", "-"), "cpu")
    rows.append(("concurrent 200 x 5 ms vs TPE(8)", "-", t_raw, t_cv, THREADS_BUDGET))

    print(f"\nmedians of {args.rounds} interleaved rounds, fresh processes; end: {_load()}")
    print(
        f"{'what':44} {'shape':13} {'raw/base s':>10} {'conveyor s':>10} {'ratio':>6} "
        f"{'budget':>6}  verdict"
    )
    ok = True
    for what, shape, base, cv, budget in rows:
        ratio = cv / base
        passed = ratio <= budget
        ok = ok and passed
        print(
            f"{what:44} {shape:13} {base:10.3f} {cv:10.3f} {ratio:5.2f}x {budget:5.2f}x  "
            f"{'PASS' if passed else 'FAIL'}"
        )
    memory = _side("memory", "-")  # once: a `dask scheduler` process and two `dask worker`s
    for kind, label in (
        ("int", "an int (sent with the run's end)"),
        ("str", "a str (kept on the cluster)"),
    ):
        per_run = memory[kind]
        ok = ok and (kind != "int" or per_run <= MEMORY_BUDGET)
        verdict = ("PASS" if per_run <= MEMORY_BUDGET else "FAIL") if kind == "int" else "(info)"
        print(
            f"driver memory per kept run returning {label}, external scheduler: "
            f"{per_run:.0f} B (budget {MEMORY_BUDGET} B)  {verdict}"
        )
    rss = max(x["chain_rss_mb"] for side in sides if side[0].startswith("cv") for x in got[side])
    raw_rss = max(x["chain_rss_mb"] for x in got[raw])
    print(
        f"driver peak RSS growth during the 1 MB chains: conveyor {rss:.1f} MB, raw {raw_rss:.1f} MB"
    )
    print("all budgets hold" if ok else "OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
