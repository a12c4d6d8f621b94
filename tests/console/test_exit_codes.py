"""Errors that are not the flow's own: one sentence, a distinct exit code, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.console._support import run_cli

RUNNERS = """
import pathlib
import attrs
from conveyor import BackendUnavailable, Runner, flow, task
from conveyor.runners import SequentialRunner

@attrs.define(kw_only=True)
class Unreachable(SequentialRunner):
    def on_start(self):
        raise BackendUnavailable("could not reach the scheduler at tcp://10.0.0.1:8786 within 1 s")

@attrs.define(kw_only=True)
class Broken(SequentialRunner):
    def on_start(self):
        raise OSError("the pool could not be made")

@attrs.define(kw_only=True)
class Picky(SequentialRunner):
    def on_start(self):
        raise TypeError("n_workers must be an integer, got 'two'")

@attrs.define(kw_only=True)
class BadStop(SequentialRunner):
    def on_stop(self):
        raise RuntimeError("the cluster would not close")

@attrs.define(kw_only=True)
class Noted(SequentialRunner):
    def on_start(self):
        pathlib.Path("started").touch()

@task
def one() -> int:
    return 1

@flow(runner=Unreachable())
def unreachable() -> int:
    return one()

@flow(runner=Broken())
def broken() -> int:
    return one()

@flow(runner=Picky())
def picky() -> int:
    return one()

@flow(runner=BadStop())
def badstop() -> int:
    return one()

@flow(runner=Noted())
def noted(n: int, name: str = "x") -> int:
    return n
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(RUNNERS)
    return tmp_path


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


class TestBackend:
    def test_unreachable_backend_is_exit_3(self, flows: Path) -> None:
        """A backend that cannot be reached is one sentence and exit 3."""
        proc = run_cli("run", "pipeline.py:unreachable", cwd=flows)
        assert proc.returncode == 3
        assert "could not reach the scheduler" in _one_line(proc.stderr)
        assert proc.stdout == ""

    def test_runner_start_failure_is_exit_3(self, flows: Path) -> None:
        """A runner whose start raises is exit 3, naming the runner and its error."""
        proc = run_cli("run", "pipeline.py:broken", cwd=flows)
        assert proc.returncode == 3
        line = _one_line(proc.stderr)
        assert "Runner 'sequential' could not start: OSError: the pool could not be made" in line
        assert "--debug shows the traceback" in line

    def test_options_the_backend_rejects_are_exit_2(self, flows: Path) -> None:
        """A start that rejects the runner's options (TypeError/ValueError) is a config error."""
        proc = run_cli("run", "pipeline.py:picky", cwd=flows)
        assert proc.returncode == 2
        assert "rejected its options: TypeError: n_workers must be" in _one_line(proc.stderr)

    def test_stop_failure_after_a_completed_flow_still_reports(self, flows: Path) -> None:
        """A runner whose stop fails after the flow completed: the report, then exit 3."""
        proc = run_cli("run", "pipeline.py:badstop", cwd=flows)
        assert proc.returncode == 3
        assert ": Completed" in proc.stdout and "result: 1" in proc.stdout
        assert "failed to stop: RuntimeError: the cluster would not close" in _one_line(proc.stderr)

    def test_debug_shows_the_traceback(self, flows: Path) -> None:
        """--debug prints the traceback of an error that is not the flow's own."""
        proc = run_cli("run", "pipeline.py:broken", "--debug", cwd=flows)
        assert proc.returncode == 3
        assert "Traceback" in proc.stderr and "in on_start" in proc.stderr


class TestTargets:
    def test_syntax_error_names_file_and_line(self, tmp_path: Path) -> None:
        """A flow file with a syntax error is exit 2 with the file, the line and the message."""
        (tmp_path / "bad.py").write_text("from conveyor import flow\n\ndef f(:\n    pass\n")
        proc = run_cli("run", "bad.py:f", cwd=tmp_path)
        assert proc.returncode == 2
        line = _one_line(proc.stderr)
        assert "bad.py, line 3" in line and "syntax" in line

    def test_missing_import_names_file_line_and_module(self, tmp_path: Path) -> None:
        """A flow file whose import fails is exit 2 naming the missing module and the line."""
        (tmp_path / "bad.py").write_text("import os\nimport no_such_module_here\n")
        proc = run_cli("run", "bad.py:f", cwd=tmp_path)
        assert proc.returncode == 2
        line = _one_line(proc.stderr)
        assert "bad.py does not import" in line and "no_such_module_here" in line
        assert "at line 2" in line

    def test_module_raising_at_import(self, tmp_path: Path) -> None:
        """A flow module raising at import is exit 2 with the error, never a traceback."""
        (tmp_path / "bad.py").write_text("x = 1\nraise RuntimeError('config missing')\n")
        proc = run_cli("run", "bad:f", cwd=tmp_path)
        assert proc.returncode == 2
        assert "RuntimeError: config missing" in _one_line(proc.stderr)

    def test_a_bad_log_level_is_a_usage_error(self, tmp_path: Path) -> None:
        """--log-level with a word that is no level is exit 2 with one line."""
        proc = run_cli("run", "x.py:f", "--log-level", "LOUD", cwd=tmp_path)
        assert proc.returncode == 2
        assert "Log level 'LOUD' is not a level" in _one_line(proc.stderr)


class TestParameters:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["-p", "name=y"], "needs parameter(s) n; give -p n=..."),
            (["-p", "n=1", "-p", "zz=2"], "has no parameter 'zz'; its signature is noted(n: int"),
            (["-p", "n=1", "-p", "n=2"], "Parameter 'n' is given twice"),
            (["-p", 'n="3"'], "`n=\"3\"` of flow 'noted' does not fit `int`: give a whole number"),
            (["-p", "n=three"], "does not fit `int`"),
        ],
    )
    def test_bad_parameters_are_exit_2_before_the_runner_starts(
        self, flows: Path, args: list[str], message: str
    ) -> None:
        """Unknown, missing, doubled or ill-typed parameters: exit 2, and no runner starts."""
        proc = run_cli("run", "pipeline.py:noted", *args, cwd=flows)
        assert proc.returncode == 2
        assert message in _one_line(proc.stderr)
        assert not (flows / "started").exists()

    def test_values_are_coerced_to_the_annotations(self, flows: Path) -> None:
        """`-p n=3` for `n: int` reaches the flow as 3, not "3"."""
        proc = run_cli("run", "pipeline.py:noted", "-p", "n=3", "--json", cwd=flows)
        assert proc.returncode == 0, proc.stderr
        assert '"json": 3' in proc.stdout

    def test_flow_help_lists_parameters(self, flows: Path) -> None:
        """`conveyor run FILE:FLOW --help` lists the parameters with types and defaults."""
        proc = run_cli("run", "pipeline.py:noted", "--help", cwd=flows)
        assert proc.returncode == 0
        assert "noted(n: int, name: str = 'x') -> int" in proc.stdout
        assert "-p n     int  required" in proc.stdout
        assert "-p name  str  default 'x'" in proc.stdout
        assert not (flows / "started").exists()
