"""Logging that fits: RUN_FORMAT for every record, the CLI's handler, and log_prints."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import flow, task
from conveyor.run_logging import RUN_FORMAT, run_formatter
from tests.console._support import clean_env, run_cli, run_in_pty

FLOWS = """
import logging, sys
from conveyor import flow, get_run_logger, task

@task
def talk(x: int) -> int:
    get_run_logger().info("info from %d", x)
    logging.getLogger("user").warning("warning from %d", x)
    return x

@flow
def talking() -> int:
    return sum(f.result() for f in talk.map([1, 2]))

@task(log_prints=True)
def printer(x: int) -> int:
    print("printed", x)
    return x

@flow
def printing() -> int:
    return printer.submit(5).result()
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.py").write_text(FLOWS)
    return tmp_path


class TestRunFormat:
    def test_basic_config_recipe_works_outside_runs(self, tmp_path: Path) -> None:
        """`logging.basicConfig(format=RUN_FORMAT)` formats records made outside any run."""
        (tmp_path / "prog.py").write_text(
            "import logging\n"
            "from conveyor import flow, task\n"
            "from conveyor.run_logging import RUN_FORMAT\n"
            "logging.basicConfig(level=logging.INFO, format=RUN_FORMAT)\n"
            "logging.getLogger('conveyor').warning('outside a run')\n"
            "@task\n"
            "def t() -> int:\n"
            "    logging.getLogger('user').info('inside')\n"
            "    return 1\n"
            "@flow(runner='concurrent')\n"
            "def f() -> int:\n"
            "    return t.submit().result()\n"
            "f()\n"
        )
        proc = subprocess.run(
            [sys.executable, "prog.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert "Logging error" not in proc.stderr and "KeyError" not in proc.stderr
        assert "[None/None] conveyor: outside a run" in proc.stderr
        assert "/t-1] user: inside" in proc.stderr

    def test_run_formatter_has_defaults_for_bare_records(self) -> None:
        """A record made without the factory still formats, with None for the names."""
        record = logging.makeLogRecord({"msg": "bare", "levelname": "INFO", "name": "x"})
        assert "[None/None] x: bare" in run_formatter().format(record)
        assert run_formatter(RUN_FORMAT).format(record).endswith("[None/None] x: bare")


class TestCliHandler:
    def test_task_info_shows_with_the_run_names(self, flows: Path) -> None:
        """conveyor run shows a task's INFO and WARNING records with the run's names."""
        proc = run_cli("run", "pipeline.py:talking", cwd=flows)
        assert proc.returncode == 0, proc.stderr
        info = next(line for line in proc.stderr.splitlines() if "info from 1" in line)
        assert " INFO " in info and "/talk-1] conveyor.runs: info from 1" in info
        assert "[talking-" in info
        assert any(
            "WARNING" in line and "warning from 2" in line for line in proc.stderr.splitlines()
        )
        assert "\x1b[" not in proc.stderr  # no colour in a pipe

    def test_log_level_filters(self, flows: Path) -> None:
        """--log-level WARNING hides INFO records."""
        proc = run_cli("run", "pipeline.py:talking", "--log-level", "warning", cwd=flows)
        assert "info from" not in proc.stderr and "warning from 1" in proc.stderr

    def test_levels_are_coloured_in_a_terminal(self, flows: Path) -> None:
        """In a terminal the level is coloured; NO_COLOR turns colour off."""
        argv = [sys.executable, "-m", "conveyor", "run", "pipeline.py:talking", "--no-progress"]
        coloured = run_in_pty(argv, flows)
        assert "\x1b[33mWARNING" in coloured.output
        plain = run_in_pty(argv, flows, env={"NO_COLOR": "1"})
        assert "\x1b[33mWARNING" not in plain.output and "WARNING" in plain.output

    def test_log_prints_through_the_cli(self, flows: Path) -> None:
        """A log_prints task's print() comes out as a log record with the run's names."""
        proc = run_cli("run", "pipeline.py:printing", "--json", cwd=flows)
        assert proc.returncode == 0, proc.stderr
        line = next(line for line in proc.stderr.splitlines() if "printed 5" in line)
        assert "/printer-1] conveyor.prints: printed 5" in line and " INFO " in line


@task(log_prints=True)
def shout(x: int) -> int:
    print("shout", x)
    print("to stderr", x, file=sys.stderr)
    return x


@task
async def whisper(x: int) -> int:
    print("whisper", x)
    return x


@task(log_prints=False)
def quiet(x: int) -> int:
    print("quiet", x)
    return x


@task
def elsewhere(buffer: io.StringIO) -> None:
    print("to a buffer", file=buffer)


class TestLogPrints:
    @pytest.mark.parametrize("runner", ["sequential", "concurrent"])
    def test_task_option(self, runner: str, caplog: pytest.LogCaptureFixture) -> None:
        """log_prints=True turns a task's prints into records: stdout INFO, stderr WARNING."""

        @flow(runner=runner)
        def f() -> int:
            return shout.submit(1).result()

        with caplog.at_level(logging.INFO):
            assert f() == 1
        records = {r.getMessage(): r for r in caplog.records if r.name == "conveyor.prints"}
        assert records["shout 1"].levelno == logging.INFO
        assert records["to stderr 1"].levelno == logging.WARNING
        assert records["shout 1"].task_run_name == "shout-1"  # type: ignore[attr-defined]
        assert records["shout 1"].flow_run_name.startswith("f-")  # type: ignore[attr-defined]

    def test_flow_default_covers_async_tasks_and_the_body(
        self, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """@flow(log_prints=True) covers the body and tasks that leave the option unset,
        async ones included; a task saying log_prints=False keeps printing."""

        @flow(runner="concurrent", log_prints=True)
        def f() -> int:
            print("from the body")
            return whisper.submit(2).result() + quiet.submit(3).result()

        with caplog.at_level(logging.INFO):
            assert f() == 5
        messages = {r.getMessage(): r for r in caplog.records if r.name == "conveyor.prints"}
        assert set(messages) == {"from the body", "whisper 2"}
        assert messages["whisper 2"].task_run_name == "whisper-1"  # type: ignore[attr-defined]
        assert messages["from the body"].task_run_name is None  # type: ignore[attr-defined]
        assert "quiet 3" in capsys.readouterr().out

    def test_prints_to_other_files_pass_through(self) -> None:
        """print(file=...) to anything but stdout or stderr writes there as usual."""
        buffer = io.StringIO()

        @flow(runner="sequential", log_prints=True)
        def f() -> None:
            elsewhere(buffer)

        f()
        assert buffer.getvalue() == "to a buffer\n"

    def test_the_wrapped_task_pickles(self) -> None:
        """The printing wrapper pickles (it travels to workers in place of the function)."""
        from conveyor.runners.remote import dumps, loads

        wrapped = shout.printing_fn()
        assert loads(dumps(wrapped)) is wrapped  # by reference to the task, made once
        quiet_one = quiet.printing_fn(False)
        assert loads(dumps(quiet_one)).active is False
