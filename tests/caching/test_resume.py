"""Resume: a flow killed with SIGKILL mid-way recomputes only the runs that did not complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.caching._resume import compute_once, kill_then_resume


@pytest.mark.parametrize("runner", ["sequential", "concurrent", "processes"])
def test_a_killed_cached_flow_recomputes_only_what_did_not_complete(
    runner: str, tmp_path: Path
) -> None:
    """Of 10 runs, the 6 in the store before the kill are Cached in the rerun; only the rest execute."""
    got = kill_then_resume(tmp_path, runner)
    assert got["entries_after_kill"] == 6
    assert got["rerun_executions"] == 10 - 6
    assert got["report"]["result"]["json"] == sum(range(10))
    assert got["report"]["task_runs"] == {"Cached": 6, "Completed": 4}


def test_conveyor_run_resume_reuses_uncached_tasks(tmp_path: Path) -> None:
    """`conveyor run --resume` journals a flow whose tasks are not cacheable, and the rerun reuses it."""
    got = kill_then_resume(tmp_path, "sequential", flow="plain_flow", extra=["--resume"])
    assert got["entries_after_kill"] == 6
    assert got["rerun_executions"] == 10 - 6
    assert got["report"]["task_runs"] == {"Cached": 6, "Completed": 4}


@pytest.mark.parametrize("runner", ["sequential", "concurrent"])
def test_two_flows_computing_one_key_compute_it_once(runner: str, tmp_path: Path) -> None:
    """The second flow waits on the first one's file lock, then reads its result: one execution."""
    executions, first, second = compute_once(tmp_path, runner)
    assert executions == 1
    assert first["task_runs"] == {"Completed": 1}
    assert second["task_runs"] == {"Cached": 1}
