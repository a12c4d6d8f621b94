"""Flows and records for the report's tests: a small mixed flow, and a synthetic large record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conveyor.run_record import AttemptRecord, Failure, RunRecord, TaskRunRecord
from conveyor.states import Completed, Failed

#: A flow file for the CLI and backend tests: retries, a failure, a run that never ran
#: (its upstream failed) and a fan-in; ``fails`` says which items raise.
MIXED_FLOW = """
import pathlib, time
from conveyor import flow, task

@task(retries=1)
def fetch(i: int) -> int:
    if i == 2:
        raise ValueError(f"item {i} is broken")
    return i * 10

@task
def total(values: list) -> int:
    return sum(values)

@task
def after(x: int) -> int:
    return x + 1

@flow
def mixed(n: int = 6) -> int:
    futures = [fetch.submit(i) for i in range(n)]
    ok = [f for i, f in enumerate(futures) if i != 2]
    after.submit(futures[2])  # never runs: its upstream failed
    return total.submit(ok).result()

@task
def slow(i: int) -> None:
    pathlib.Path(f"started-{i}").touch()
    time.sleep(120)

@flow
def long() -> None:
    for f in slow.map(range(2)):
        f.result()
"""

#: What MIXED_FLOW's ``mixed`` ends with, by task name and state (n=6).
MIXED_COUNTS = {
    "after": {"NotRun": 1},
    "fetch": {"Completed": 5, "Failed": 1},
    "total": {"Completed": 1},
}


def report_document(path: Path) -> dict[str, Any]:
    """The ``conveyor.report/1`` document embedded in the report at ``path``."""
    page = path.read_text(encoding="utf-8")
    start = page.index('id="report-data">') + len('id="report-data">')
    doc: dict[str, Any] = json.loads(page[start : page.index("</script>", start)])
    return doc


def synthetic_record(runs: int, *, failed_every: int = 10, lanes: int = 8) -> RunRecord:
    """
    A finished record of ``runs`` task runs over ``lanes`` threads, every ``failed_every``-th
    failed after a retry with a traceback (the worst case for the report's size), each run
    after the first depending on the one before it.
    """
    record = RunRecord("abcd1234", "big-abcd1234", "big", "concurrent", {"max_workers": lanes})
    record.task_runs = []
    record.started = 100.0
    tb = "Traceback (most recent call last):\n" + '  File "/x/pipeline.py", line 12, in fetch\n' * 8
    for i in range(runs):
        task_name = f"task{i % 5}"
        start = 100.0 + i * 0.001
        where = f"thread conveyor-worker-{i % lanes + 1}"
        failed = i % failed_every == 0
        attempts = [
            AttemptRecord(1, start, start + 0.004, where, "Failed" if failed else "Completed")
        ]
        if failed:
            attempts.append(AttemptRecord(2, start + 0.005, start + 0.008, where, "Failed"))
        end = attempts[-1].end
        state = Failed(ValueError(f"item {i} is broken")) if failed else Completed(i)
        upstream = (f"r{i - 1}",) if i else ()
        record.task_runs.append(
            TaskRunRecord(
                f"r{i}",
                f"{task_name}-{i}",
                task_name,
                state.name,
                state.type.value,
                state.message,
                None,
                start - 0.0005,
                end,
                tuple(attempts),
                upstream,
            )
        )
        record.count(task_name, f"{task_name}-{i}", state.name, end - start)
        if failed:
            record.failures.append(
                Failure(
                    f"{task_name}-{i}",
                    task_name,
                    "Failed",
                    state.message,
                    None,
                    "pipeline.py:12 in fetch",
                    tb + f"ValueError: item {i} is broken\n",
                )
            )
    record.ended = 100.0 + runs * 0.001 + 0.01
    record.state = Failed(ValueError("x"), f"{runs // failed_every} task run(s) did not complete")
    return record
