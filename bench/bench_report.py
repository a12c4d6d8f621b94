"""
The HTML run report's budgets at 10,000 task runs:

- writing the report takes under 2 s (``write_report`` of a finished real flow run);
- the file stays under 5 MB;
- it opens in under 3 s in headless Chromium: the page's own clock (``performance.now()`` when
  its script has drawn everything, from the start of navigation) and the wall time of
  ``chromium --dump-dom`` (browser start included) are both printed;
- recording for the report (``record_runs``) against no recording, per run.

    python bench/bench_report.py [--runs N]

Two flows are measured: 10,000 no-op runs on ``concurrent`` (real records: threads, attempts),
and the tests' synthetic worst case (every tenth run failed after a retry, with a traceback).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.report

from conveyor import flow, task
from conveyor.report import write_report
from conveyor.run_record import RunRecord
from tests.report._browser import check_attributes, chromium_missing, dump_dom
from tests.report._support import synthetic_record


@task
def noop(i: int) -> int:
    return i


@flow(runner="concurrent")
def many(n: int) -> int:
    return len([f.result() for f in noop.map(range(n))])


def _real(n: int, record_runs: bool) -> tuple[RunRecord, float]:
    flow_run = many.create_run(record_runs=record_runs)
    start = time.perf_counter()
    flow_run.run((n,))
    return flow_run.record, time.perf_counter() - start


def _measure(label: str, record: RunRecord, folder: Path) -> None:
    path = folder / f"{label}.html"
    start = time.perf_counter()
    write_report(record, path)
    wrote = time.perf_counter() - start
    size = path.stat().st_size
    line = f"{label}: write {wrote:.2f} s, size {size / 1e6:.2f} MB"
    if chromium_missing() is None:
        start = time.perf_counter()
        seen = check_attributes(dump_dom(path))
        wall = time.perf_counter() - start
        line += (
            f", page drawn at {float(seen['page_ms']) / 1000:.2f} s (script "
            f"{float(seen['render_ms']) / 1000:.2f} s, {seen['bars']} bars), chromium "
            f"--dump-dom wall {wall:.2f} s"
        )
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    n = args.runs
    _real(200, True)  # warm up the runner and the imports
    _, plain = _real(n, False)
    record, recorded = _real(n, True)
    print(
        f"{n} no-op runs on concurrent: {plain / n * 1e6:.1f} µs/run without recording, "
        f"{recorded / n * 1e6:.1f} µs/run with record_runs",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        _measure(f"real {n} runs", record, Path(tmp))
        _measure(f"synthetic {n} runs (10% failed, tracebacks)", synthetic_record(n), Path(tmp))


if __name__ == "__main__":
    main()
