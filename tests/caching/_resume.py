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
FLOWS = "tests.caching._resume_flow"  # a module: workers of a shared cluster import it


def _command(
    flow: str, runner: str, marker: Path, gate: Path, k: int, n: int, extra: list[str]
) -> list[str]:
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
    with (tmp_path / "first.log").open("wb") as log:
        first = subprocess.Popen(
            cmd, env=full_env, cwd=tmp_path, start_new_session=True, stdout=log, stderr=log
        )
        try:
            wait_until(lambda: len(list(store.keys())) >= k, 120, what=f"{k} results in the store")
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    entries = len(list(store.keys()))
    before = _lines(marker)
    gate.write_text("open")
    second = subprocess.run(
        cmd, env=full_env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    return {
        "entries_after_kill": entries,
        "first_executions": before,
        "rerun_executions": _lines(marker) - before,
        "report": report,
    }


def blocked_lock_waiters() -> int:
    """How many processes wait for a file lock now (the ``->`` lines of /proc/locks)."""
    return sum(" -> " in line for line in Path("/proc/locks").read_text().splitlines())


def compute_once(tmp_path: Path, runner: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """
    Start two flows that compute the same key: the second starts while the first computes
    and waits for its lock; return the executions and both reports.
    """
    marker, gate = tmp_path / "marker", tmp_path / "gate"
    env = {**os.environ, "CONVEYOR_RESULT_STORE": str(tmp_path / "store")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = _command("cached_flow", runner, marker, gate, 0, 1, [])
    popen: dict[str, Any] = {"env": env, "cwd": tmp_path, "stdout": subprocess.PIPE, "text": True}
    waiting_before = blocked_lock_waiters()
    with subprocess.Popen(cmd, **popen) as a:
        wait_until(lambda: _lines(marker) == 1, 60, what="the first flow's run to start")
        with subprocess.Popen(cmd, **popen) as b:
            wait_until(
                lambda: blocked_lock_waiters() > waiting_before, 60, what="the second flow to wait"
            )
            gate.write_text("open")
            out_b, _ = b.communicate(timeout=120)
        out_a, _ = a.communicate(timeout=120)
    return _lines(marker), json.loads(out_a), json.loads(out_b)
