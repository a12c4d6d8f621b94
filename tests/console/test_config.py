"""Config that is never silently ignored, and `conveyor config` saying where everything came from."""

from __future__ import annotations

import json
from pathlib import Path

from tests.console._support import run_cli

FLOW = """
from conveyor import flow

@flow(runner="sequential")
def decorated() -> int:
    return 1

@flow
def plain() -> int:
    return 1
"""


def _project(tmp_path: Path, toml: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(toml)
    (tmp_path / "pipeline.py").write_text(FLOW)
    return tmp_path


class TestUnknownKeys:
    def test_a_misspelt_key_is_an_error_naming_file_key_and_fix(self, tmp_path: Path) -> None:
        """`runer = ...` in [tool.conveyor] is exit 2 naming the file, the key and `runner`."""
        project = _project(tmp_path, '[tool.conveyor]\nruner = "sequential"\n')
        proc = run_cli("run", "pipeline.py:plain", cwd=project)
        assert proc.returncode == 2
        assert str(project / "pyproject.toml") in proc.stderr
        assert (
            "`tool.conveyor.runer` is not a conveyor setting. Did you mean `runner`?" in proc.stderr
        )

    def test_a_conveyor_toml_key_is_checked_too(self, tmp_path: Path) -> None:
        """conveyor.toml's top-level keys are checked the same way."""
        (tmp_path / "conveyor.toml").write_text("[runner]\nx = 1\n[runers.concurrent]\n")
        (tmp_path / "pipeline.py").write_text(FLOW)
        proc = run_cli("run", "pipeline.py:plain", cwd=tmp_path)
        assert proc.returncode == 2
        assert "`runers` is not a conveyor setting. Did you mean `runners`?" in proc.stderr

    def test_a_table_naming_no_installed_runner_is_warned_about(self, tmp_path: Path) -> None:
        """A runner table whose name no runner has is a warning with the closest name."""
        project = _project(tmp_path, "[tool.conveyor.runners.concurent]\nmax_workers = 2\n")
        proc = run_cli("run", "pipeline.py:plain", cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert "`tool.conveyor.runners.concurent` names no installed runner" in proc.stderr
        assert "Did you mean `concurrent`?" in proc.stderr

    def test_an_option_error_names_where_the_value_came_from(self, tmp_path: Path) -> None:
        """A bad -o value is blamed on --option, not on a pyproject.toml it did not come from."""
        project = _project(tmp_path, "[tool.conveyor.runners.concurrent]\nmax_workers = 2\n")
        proc = run_cli("run", "pipeline.py:plain", "-o", "max_workers=two", cwd=project)
        assert proc.returncode == 2
        assert "(from --option)" in proc.stderr and "pyproject.toml" not in proc.stderr
        env = run_cli(
            "run",
            "pipeline.py:plain",
            cwd=project,
            env={"CONVEYOR_RUNNER_OPTIONS": '{"max_worker": 2}'},
        )
        assert "(from CONVEYOR_RUNNER_OPTIONS)" in env.stderr
        assert "Did you mean `max_workers`?" in env.stderr


class TestConfigCommand:
    def test_shows_runner_and_option_sources(self, tmp_path: Path) -> None:
        """`conveyor config --json` names the runner, where it came from and each option's source."""
        project = _project(
            tmp_path,
            '[tool.conveyor]\nrunner = "concurrent"\n[tool.conveyor.runners.concurrent]\nmax_workers = 3\n',
        )
        doc = json.loads(run_cli("config", "--json", cwd=project).stdout)
        assert doc["runner"] == "concurrent"
        assert doc["runner_source"] == f"{project / 'pyproject.toml'} [tool.conveyor.runner]"
        assert doc["options"]["max_workers"] == {
            "value": 3,
            "source": f"{project / 'pyproject.toml'} [tool.conveyor.runners.concurrent]",
        }
        cli = json.loads(run_cli("config", "--json", "-o", "max_workers=5", cwd=project).stdout)
        assert cli["options"]["max_workers"] == {"value": 5, "source": "--option"}

    def test_the_decorator_and_the_environment(self, tmp_path: Path) -> None:
        """With a target, the decorator's runner counts; CONVEYOR_RUNNER overrides it."""
        project = _project(tmp_path, "")
        decorated = json.loads(
            run_cli("config", "pipeline.py:decorated", "--json", cwd=project).stdout
        )
        assert (decorated["runner"], decorated["runner_source"]) == (
            "sequential",
            "@flow(runner=...)",
        )
        env = json.loads(
            run_cli(
                "config",
                "pipeline.py:decorated",
                "--json",
                cwd=project,
                env={"CONVEYOR_RUNNER": "concurrent"},
            ).stdout
        )
        assert (env["runner"], env["runner_source"]) == ("concurrent", "CONVEYOR_RUNNER")
        assert env["options"]["max_workers"]["source"] == "default"

    def test_text_output(self, tmp_path: Path) -> None:
        """Without --json it prints the same in lines."""
        project = _project(tmp_path, "")
        proc = run_cli("config", "-r", "concurrent", "-o", "max_workers=2", cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert "runner: concurrent (from --runner)" in proc.stdout
        assert "max_workers = 2  (from --option)" in proc.stdout
