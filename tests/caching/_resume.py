"""The resume check shared by the runners' tests: start a flow, kill it after k runs, rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from conveyor.caching.store import LocalStore
from conveyor.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]
FLOWS = str(Path(__file__).with_name("_resume_flow.py"))


def _command(flow: str, runner: str, marker: Path, gate: Path, k: int, n: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "conveyor", "run", f"{FLOWS}:{flow}", "-r", runner, "--no-progress",
        "--json", "-p", f"marker={marker}", "-p", f"gate={gate}", "-p", f"k={k}", "-p", f"n={n}",
        *extra,
    ]  # fmt: skip


def _lines(marker: Path) -> int:
    return len(marker.read_text().split()) if marker.exists() else 0


def kill_then_resume(
    tmp_path: Path,
    runner: str,
    *,
    flow: str = "cached_flow",
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    k: int = 6,
    n: int = 10,
) -> dict[str, Any]:
    """
    Run ``flow`` in a subprocess until ``k`` results are in the store, SIGKILL its process
    group, then rerun it to the end; return the counts (entries, executions per run, result).
    """
    store_dir = tmp_path / "store"
    marker, gate = tmp_path / "marker", tmp_path / "gate"
    full_env = {**os.environ, "CONVEYOR_RESULT_STORE": str(store_dir), **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    cmd = _command(flow, runner, marker, gate, k, n, extra or [])
    store = LocalStore(store_dir)
    first = subprocess.Popen(
        cmd, env=full_env, cwd=tmp_path, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until(lambda: len(list(store.keys())) >= k, 120, what=f"{k} results in the store")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert first.stderr is not None
        first.stderr.close()
    entries = len(list(store.keys()))
    before = _lines(marker)
    gate.write_text("open")
    second = subprocess.run(cmd, env=full_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    return {
        "entries_after_kill": entries,
        "first_executions": before,
        "rerun_executions": _lines(marker) - before,
        "report": report,
    }
