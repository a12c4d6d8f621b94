"""Caching on Dask: hits are Cached without running on the cluster; a killed flow resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_dask")

from conveyor_dask import DaskRunner
from tests.caching._resume import kill_then_resume
from tests.caching._resume_flow import cached_flow


@pytest.mark.parametrize("where", ["folder", "memory"])
def test_a_rerun_on_dask_is_all_cached(
    where: str, cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second run of a 5-run flow executes nothing on the workers and counts 5 Cached."""
    store = str(tmp_path / "store") if where == "folder" else f"memory://{tmp_path.name}"
    monkeypatch.setenv("CONVEYOR_RESULT_STORE", store)
    marker, gate = tmp_path / "marker", tmp_path / "gate"
    gate.write_text("open")
    runner = DaskRunner(address=cluster.scheduler_address, connect_timeout=10)
    on_dask = cached_flow.with_options(runner=runner)
    assert on_dask(str(marker), str(gate), 0, 5) == 10
    run = on_dask.create_run()
    assert run.run((str(marker), str(gate), 0, 5), {}).result() == 10
    assert len(marker.read_text().split()) == 5
    assert run.record.counts() == {"Cached": 5}


@pytest.mark.slow
def test_a_killed_flow_on_dask_recomputes_only_what_did_not_complete(
    cluster: Any, tmp_path: Path
) -> None:
    """A flow SIGKILLed after 6 of 10 runs reruns on the same cluster executing only 4."""
    options = json.dumps({"address": cluster.scheduler_address, "connect_timeout": 10})
    got = kill_then_resume(tmp_path, "dask", env={"CONVEYOR_RUNNER_OPTIONS": options})
    assert got["entries_after_kill"] == 6
    # The rerun ran 4 runs and reused 6. The marker may count one more line: a run of the
    # killed flow still queued on a worker can start before the cluster notices its client died.
    assert got["report"]["task_runs"] == {"Cached": 6, "Completed": 4}
    assert 4 <= got["rerun_executions"] <= 4 + 2
