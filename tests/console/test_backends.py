"""The console on Dask and Ray: log_prints from workers, RUN_FORMAT, and --json stay right."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.console._support import clean_env, run_cli

PROGRAM = """
import logging
from conveyor import flow, task
from conveyor.run_logging import RUN_FORMAT

logging.basicConfig(level=logging.INFO, format=RUN_FORMAT)

@task(log_prints=True)
def hello(x: int) -> int:
    print("hello from a worker", x)
    return x

@flow
def greet() -> int:
    return sum(f.result() for f in hello.map(range(2)))

if __name__ == "__main__":
    print("RESULT", greet())
"""

BACKENDS = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(
            importlib.util.find_spec(f"conveyor_{name}") is None,
            reason=f"conveyor-{name} is not installed",
        ),
    )
    for name in ("dask", "ray")
]


@pytest.mark.parametrize("runner", BACKENDS)
def test_worker_prints_reach_the_driver_as_records(runner: str, tmp_path: Path) -> None:
    """On a backend, a log_prints task's print() on a worker reaches the driver's RUN_FORMAT
    handler with the run's names, and no record anywhere raises a logging error."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    proc = subprocess.run(
        [sys.executable, "prog.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=clean_env({"CONVEYOR_RUNNER": runner}),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT 1" in proc.stdout
    assert "Logging error" not in proc.stderr and "KeyError" not in proc.stderr
    for i in (0, 1):
        assert f"/hello-{i + 1}] conveyor.prints: hello from a worker {i}" in proc.stderr


@pytest.mark.parametrize("runner", BACKENDS)
def test_json_on_a_backend(runner: str, tmp_path: Path) -> None:
    """`conveyor run --json` on a backend: one document on stdout, worker output on stderr."""
    (tmp_path / "prog.py").write_text(PROGRAM.replace("logging.basicConfig", "dict"))
    proc = run_cli("run", "prog.py:greet", "--json", "--runner", runner, cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["runner"] == runner and doc["state"] == "Completed"
    assert doc["tasks"]["hello"]["states"] == {"Completed": 2}
    assert doc["result"]["json"] == 1
    assert "conveyor.prints: hello from a worker 0" in proc.stderr
