"""The end-of-run report and --json, through the real CLI; the run record through the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conveyor import flow, task
from conveyor.run_record import RunRecord
from tests.console._support import run_cli

FLOWS = """
import sys
from conveyor import flow, task

@task
def add(x: int, y: int) -> int:
    print("adding", x, y)
    return x + y

@task
def boom(i: int) -> None:
    raise ValueError(f"boom {i}")

@flow
def adds(x: int = 1, ys: list[int] = [1, 2]) -> list[int]:
    return [add.submit(x, y).result() for y in ys]

@flow
def failing() -> None:
    boom.map(range(12))
    add.submit(1, 1)

@flow
def opaque() -> object:
    return {"lock": __import__("threading").Lock(), "text": "x" * 1000}

@task
def closer() -> int:
    sys.stdout.close()
    return 1

@flow
def closing() -> int:
    return closer()
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(FLOWS)
    return tmp_path


class TestReport:
    def test_report_of_a_completed_flow(self, flows: Path) -> None:
        """The report gives the state and time, per task name counts and durations, the
        slowest runs and the result."""
        proc = run_cli("run", "pipeline.py:adds", "-p", "ys=[1,2,3]", cwd=flows)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        head = next(line for line in lines if line.startswith("flow run adds-"))
        assert " on concurrent: Completed in " in head
        assert "  task runs: 3 Completed" in lines
        row = next(line for line in lines if line.strip().startswith("add "))
        assert row.split()[:3] == ["add", "3", "3"]
        assert " ms" in row or " s" in row
        assert any(line.startswith("  slowest: add-") for line in lines)
        assert "  result: [2, 3, 4]" in lines

    def test_report_lists_failures_with_where_they_raised(self, flows: Path) -> None:
        """Each failed run is listed with its message and the line that raised, up to ten."""
        proc = run_cli("run", "pipeline.py:failing", cwd=flows)
        assert proc.returncode == 1
        assert "task runs: 1 Completed, 12 Failed" in proc.stdout
        assert "boom-1 Failed: ValueError: boom 0 (pipeline.py:12 in boom)" in proc.stdout
        assert "... and 2 more (--json lists them all)" in proc.stdout
        assert "Traceback" not in proc.stdout + proc.stderr

    def test_a_task_closing_stdout_does_not_break_the_report(self, flows: Path) -> None:
        """A task that closes sys.stdout still gets the report printed."""
        proc = run_cli("run", "pipeline.py:closing", cwd=flows)
        assert proc.returncode == 0, proc.stderr
        assert "closing-" in proc.stdout and "result: 1" in proc.stdout
        assert "I/O operation on closed file" not in proc.stderr


class TestJson:
    def test_stdout_is_one_json_document(self, flows: Path) -> None:
        """With --json stdout parses as one document and what tasks print is on stderr."""
        proc = run_cli("run", "pipeline.py:adds", "--json", "-p", "x=2", cwd=flows)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert "adding 2 1" in proc.stderr and "adding" not in proc.stdout
        assert doc["schema"] == "conveyor.run/1"
        assert doc["flow"] == "adds" and doc["flow_run"].startswith("adds-")
        assert doc["state"] == "Completed" and doc["state_type"] == "COMPLETED"
        assert doc["task_runs"] == {"Completed": 2}
        assert doc["tasks"]["add"]["runs"] == 2
        assert doc["tasks"]["add"]["states"] == {"Completed": 2}
        assert doc["tasks"]["add"]["longest_seconds"] >= doc["tasks"]["add"]["median_seconds"] >= 0
        assert doc["elapsed_seconds"] >= 0 and doc["started_at"] <= doc["ended_at"]
        assert {s["task"] for s in doc["slowest"]} == {"add"}
        assert doc["result"] == {"json": [3, 4], "is_json": True, "repr": "[3, 4]"}
        assert doc["runner"] == "concurrent" and "max_workers" in doc["runner_options"]

    def test_failures_in_json(self, flows: Path) -> None:
        """Every failure is in the document with its message, state and origin."""
        proc = run_cli("run", "pipeline.py:failing", "--json", cwd=flows)
        doc = json.loads(proc.stdout)
        assert doc["state"] == "Failed" and proc.returncode == 1
        assert len(doc["failures"]) == 12
        first = next(f for f in doc["failures"] if f["name"] == "boom-1")
        assert first == {
            "name": "boom-1",
            "task": "boom",
            "state": "Failed",
            "message": "ValueError: boom 0",
            "reason": None,
            "origin": "pipeline.py:12 in boom",
        }

    def test_a_result_that_is_not_json_comes_as_its_repr(self, flows: Path) -> None:
        """A return value JSON cannot hold is given by its repr, shortened."""
        doc = json.loads(run_cli("run", "pipeline.py:opaque", "--json", cwd=flows).stdout)
        assert doc["result"]["is_json"] is False and doc["result"]["json"] is None
        assert doc["result"]["repr"].startswith("{'lock': <unlocked _thread.lock")
        assert len(doc["result"]["repr"]) <= 200

    def test_closed_stdout_still_gives_json(self, flows: Path) -> None:
        """A task closing stdout under --json still leaves one document on stdout."""
        proc = run_cli("run", "pipeline.py:closing", "--json", cwd=flows)
        assert json.loads(proc.stdout)["result"]["json"] == 1


@task(retries=1)
def flaky(marker: list[int]) -> int:
    marker.append(1)
    if len(marker) == 1:
        raise ValueError("first try fails")
    return len(marker)


@task
def double(x: int) -> int:
    return 2 * x


class TestRecordApi:
    def test_record_runs_keeps_every_attempt(self) -> None:
        """With record_runs the record holds each run's attempts, times, places and upstream."""

        @flow(runner="concurrent", record_runs=True)
        def recorded() -> int:
            first = flaky.submit([])
            return double.submit(first).result()

        run = recorded.create_run()
        state = run.run()
        assert state.result() == 4
        record: RunRecord = run.record
        assert record.state is state and record.elapsed is not None
        runs = {r.name: r for r in record.iter_task_runs()}
        assert set(runs) == {"flaky-1", "double-1"}
        tries = runs["flaky-1"].attempts
        assert [(a.number, a.state) for a in tries] == [(1, "Failed"), (2, "Completed")]
        assert all(
            a.where is not None and a.where.startswith("thread conveyor-worker") for a in tries
        )
        assert all(a.start is not None and a.start <= a.end for a in tries)
        assert tries[0].end <= tries[1].start  # type: ignore[operator]
        assert runs["double-1"].upstream == (runs["flaky-1"].id,)
        assert runs["flaky-1"].submitted <= runs["flaky-1"].start <= runs["double-1"].start  # type: ignore[operator]
        assert record.tasks["flaky"].states == {"Completed": 1}

    def test_the_summary_is_always_kept(self) -> None:
        """Without record_runs the record still has counts, durations and failures, no runs."""

        @flow(runner="sequential")
        def plain() -> list[int]:
            return [f.result() for f in double.map(range(5))]

        run = plain.create_run()
        run.run()
        assert run.record.task_runs is None
        summary = run.record.tasks["double"]
        assert summary.runs == 5 and len(summary.durations) == 5
        assert summary.median is not None and summary.longest is not None
        assert len(run.record.slowest) == 5

    def test_record_with_options_and_create_run(self) -> None:
        """record_runs can be set with with_options or create_run as well."""

        @flow(runner="sequential")
        def plain() -> int:
            return double(2)

        run = plain.with_options(record_runs=True).create_run()
        run.run()
        assert [r.name for r in run.record.iter_task_runs()] == ["double-1"]
        other = plain.create_run(record_runs=True)
        other.run()
        assert other.record.task_runs is not None and len(other.record.task_runs) == 1

    def test_a_flow_body_error_is_a_failure_of_the_record(self) -> None:
        """When the body raises, the record lists the flow run itself with its origin."""

        @flow(runner="sequential")
        def broken() -> None:
            raise KeyError("missing")

        run = broken.create_run()
        state = run.run()
        assert state.is_failed()
        (failure,) = run.record.failures
        assert failure.name == run.name and "KeyError" in failure.message
        assert failure.origin is not None and "in broken" in failure.origin

    def test_remote_outcomes_say_where_they_ran(self) -> None:
        """The envelope names the worker process, and report_outcome gives it to the attempt."""
        import os

        from conveyor.runners.remote import function_bytes, run_call

        outcome, value = run_call(function_bytes(_three), (), {}, ("f", "t"), 20)
        assert value == 3 and outcome.where is not None
        assert outcome.where.startswith(f"process {os.getpid()} on ")


def _three() -> Any:
    return 3
