"""The conveyor command: runners, run, --version, and errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import conveyor
from conveyor.cli import main
from conveyor.plugins import PluginHost, use_host

ROOT = Path(__file__).resolve().parent.parent
FLOWS = """
from conveyor import flow, task

@task
def add(x, y):
    return x + y

@task
def boom():
    raise ValueError("boom")

@flow
def adds(x: int = 1, ys: list = [1, 2]):
    return [add.submit(x, y).result() for y in ys]

@flow
def failing():
    boom.submit()
    add.submit(1, 1)

@flow
async def asyncly(x: int = 1):
    return await add.submit(x, 1)
"""


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=120,
    )


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.py"
    path.write_text(FLOWS)
    return path


class TestRunners:
    def test_table_lists_builtins(self) -> None:
        """`conveyor runners` prints each runner with distribution, version and concurrency."""
        proc = run_cli("runners")
        assert proc.returncode == 0, proc.stderr
        lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
        assert lines["concurrent"][1:4] == ["conveyor", conveyor.__version__, "concurrent"]
        assert lines["sequential"][1:4] == ["conveyor", conveyor.__version__, "sequential"]

    def test_json(self) -> None:
        """`conveyor runners --json` gives the same as JSON, with capabilities."""
        proc = run_cli("runners", "--json")
        data = json.loads(proc.stdout)
        by_name = {r["name"]: r for r in data["runners"]}
        assert by_name["concurrent"]["distribution"] == "conveyor"
        assert by_name["concurrent"]["capabilities"]["hard_timeouts"] is False
        assert isinstance(data["problems"], list)

    def test_blocked_plugins_are_listed(self) -> None:
        """A blocked plugin is listed with its status."""
        proc = run_cli("runners", "--json", env={"CONVEYOR_BLOCK_PLUGINS": "dask,ray"})
        data = json.loads(proc.stdout)
        names = {r["name"] for r in data["runners"]}
        assert "dask" not in names and "ray" not in names
        assert all(
            p["status"] == "blocked" for p in data["problems"] if p["plugin"] in {"dask", "ray"}
        )


class TestRun:
    def test_run_file_with_params_and_runner(self, flows: Path) -> None:
        """`conveyor run FILE.py:FLOW` takes JSON parameters and a runner, and summarises."""
        proc = run_cli(
            "run", f"{flows}:adds", "--runner", "sequential", "-p", "x=10", "-p", "ys=[1,2,3]"
        )
        assert proc.returncode == 0, proc.stderr
        assert "on sequential: Completed" in proc.stdout
        assert "task runs: 3 Completed" in proc.stdout

    def test_run_module_target(self, flows: Path) -> None:
        """`conveyor run module:FLOW` imports from the working directory."""
        proc = run_cli("run", "pipeline:adds", "--json", cwd=flows.parent)
        summary = json.loads(proc.stdout)
        assert summary["state"] == "Completed"
        assert summary["runner"] == "concurrent"
        assert summary["task_runs"] == {"Completed": 2}

    def test_failed_flow_exits_non_zero_with_summary(self, flows: Path) -> None:
        """A flow that did not complete exits 1 and the summary counts the states."""
        proc = run_cli("run", f"{flows}:failing", "--runner", "concurrent")
        assert proc.returncode == 1
        assert ": Failed" in proc.stdout
        assert "1 Completed, 1 Failed" in proc.stdout
        assert "Traceback" not in proc.stderr

    def test_runner_options_from_the_cli(self, flows: Path) -> None:
        """--option passes runner options (JSON values) and they are validated."""
        ok = run_cli("run", f"{flows}:adds", "-o", "max_workers=2")
        assert ok.returncode == 0, ok.stderr
        bad = run_cli("run", f"{flows}:adds", "-o", "max_workers=two")
        assert bad.returncode == 2
        assert "max_workers='two'" in bad.stderr and "Traceback" not in bad.stderr

    def test_async_flow(self, flows: Path) -> None:
        """Async flows run from the CLI too."""
        proc = run_cli("run", f"{flows}:asyncly", "-p", "x=4", "--json")
        assert json.loads(proc.stdout)["state"] == "Completed"

    def test_env_runner_is_used(self, flows: Path) -> None:
        """CONVEYOR_RUNNER picks the runner for `conveyor run`."""
        proc = run_cli("run", f"{flows}:adds", "--json", env={"CONVEYOR_RUNNER": "sequential"})
        assert json.loads(proc.stdout)["runner"] == "sequential"

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["run", "nofile.py:f"], "does not exist"),
            (["run", "pipeline.py"], "is not FILE.py:FLOW"),
            (["run", "pipeline.py:nothere"], "its flows are: adds, asyncly, failing"),
            (["run", "pipeline.py:adds", "--runner", "dsk"], "There is no runner named 'dsk'"),
            (["run", "pipeline.py:adds", "-p", "oops"], "is not NAME=VALUE"),
        ],
    )
    def test_user_errors_are_one_line(self, flows: Path, args: list[str], message: str) -> None:
        """Bad targets, names and parameters print one clear line and exit 2."""
        proc = run_cli(*args, cwd=flows.parent, env={"CONVEYOR_BLOCK_PLUGINS": "dask,ray"})
        assert proc.returncode == 2
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr

    def test_malformed_config_is_one_line(self, flows: Path) -> None:
        """A malformed pyproject.toml names the file and line, without a traceback."""
        (flows.parent / "pyproject.toml").write_text("[tool.conveyor]\nrunner = \n")
        proc = run_cli("run", "pipeline.py:adds", cwd=flows.parent)
        assert proc.returncode == 2
        assert "pyproject.toml" in proc.stderr and "line 2" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_version() -> None:
    """`conveyor --version` prints the version."""
    proc = run_cli("--version")
    assert proc.stdout.strip() == f"conveyor {conveyor.__version__}"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`conveyor` alone prints help and exits 2."""
    assert main([]) == 2
    assert "runners" in capsys.readouterr().out


def test_run_in_process_twice_leaves_the_host_as_it_was(
    flows: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main(['run', ...]) called twice in one process runs both and unregisters its helper."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    target = flows.with_name("in_process_flows.py")
    target.write_text(FLOWS)
    host = PluginHost(entry_points=False)
    try:
        with use_host(host):
            for _ in range(2):
                assert main(["run", f"{target}:adds", "--runner", "sequential", "--json"]) == 0
                assert json.loads(capsys.readouterr().out)["task_runs"] == {"Completed": 2}
                assert host.plugin_names() == ["conveyor"]
        assert host.problems() == []
    finally:
        sys.modules.pop("in_process_flows", None)
