"""Live progress, drawn for real on a pseudo-terminal; nothing in a pipe or when turned off."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.console._support import run_cli, run_in_pty

pytest.importorskip("rich")

SLOW = """
import time
from conveyor import flow, task

@task
def step(i: int) -> int:
    time.sleep(0.05)  # work that takes a while, so the display has frames to draw
    return i

@task
def picky(i: int) -> int:
    if i % 2:
        raise ValueError(f"odd {i}")
    return i

@flow(runner="concurrent")
def slow(n: int = 40) -> int:
    odd = picky.map(range(4))
    total = sum(f.result() for f in step.map(range(n)))
    return total + len([f for f in odd if f.wait() and f.state.is_completed()])
"""

LIBRARY = """
import time
from conveyor import flow, task

@task
def step(i: int) -> int:
    time.sleep(0.02)  # work that takes a while
    return i

@flow(runner="concurrent", progress=True)
def slow() -> int:
    return sum(f.result() for f in step.map(range(30)))

print("RESULT", slow())
"""

MOVES = re.compile(r"\x1b\[[0-9]*[AK]")  # cursor up, erase line: a line ends there
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _frames(output: str, task: str) -> list[str]:
    """The lines of the display that show ``task``, without colour codes."""
    plain = ANSI.sub("", MOVES.sub("\n", output.replace("\r", "\n")))
    return [line for line in plain.splitlines() if line.startswith(task) and "pending" in line]


@pytest.fixture
def slow_flow(tmp_path: Path) -> Path:
    (tmp_path / "slow.py").write_text(SLOW)
    return tmp_path


class TestTerminal:
    def test_conveyor_run_draws_progress_per_task_name(self, slow_flow: Path) -> None:
        """In a terminal, each task name gets a line with its runs by state, redrawn in place."""
        result = run_in_pty([sys.executable, "-m", "conveyor", "run", "slow.py:slow"], slow_flow)
        assert result.returncode == 0, result.output
        steps = _frames(result.output, "step")
        assert len(steps) >= 2, result.output
        assert any("running" in f for f in steps)
        assert any("40/40" in f and "40 completed" in f for f in steps), steps[-3:]
        pickies = _frames(result.output, "picky")
        assert any("2 completed" in f and "2 failed" in f for f in pickies), pickies[-3:]
        assert "ETA" in steps[-1]

    def test_the_display_is_removed_before_the_report(self, slow_flow: Path) -> None:
        """`conveyor run` removes its display at the end, so the report follows cleanly."""
        result = run_in_pty([sys.executable, "-m", "conveyor", "run", "slow.py:slow"], slow_flow)
        shown_again = result.output.rindex("\x1b[?25h")  # the cursor comes back
        report = result.output.index("flow run slow-")
        assert shown_again < report
        assert "pending" not in result.output[report:]
        assert "task runs: 42 Completed, 2 Failed" in result.output[report:]

    def test_no_progress_shows_nothing(self, slow_flow: Path) -> None:
        """--no-progress draws no display, even in a terminal."""
        result = run_in_pty(
            [sys.executable, "-m", "conveyor", "run", "slow.py:slow", "--no-progress"], slow_flow
        )
        assert result.returncode == 0
        assert _frames(result.output, "step") == []
        assert "task runs: 42 Completed, 2 Failed" in result.output

    def test_env_zero_turns_it_off(self, slow_flow: Path) -> None:
        """CONVEYOR_PROGRESS=0 turns the display off for conveyor run too."""
        result = run_in_pty(
            [sys.executable, "-m", "conveyor", "run", "slow.py:slow"],
            slow_flow,
            env={"CONVEYOR_PROGRESS": "0"},
        )
        assert _frames(result.output, "step") == []

    def test_library_flow_with_progress_true_freezes_its_display(self, tmp_path: Path) -> None:
        """`@flow(progress=True)` shows the display in a terminal and leaves its last frame."""
        (tmp_path / "prog.py").write_text(LIBRARY)
        result = run_in_pty([sys.executable, "prog.py"], tmp_path)
        assert result.returncode == 0, result.output
        frames = _frames(result.output, "step")
        assert frames and "30/30" in frames[-1] and "30 completed" in frames[-1]
        assert "RESULT 435" in result.output

    def test_library_flow_follows_conveyor_progress(self, tmp_path: Path) -> None:
        """A flow that does not say shows progress when CONVEYOR_PROGRESS=1."""
        (tmp_path / "prog.py").write_text(LIBRARY.replace(", progress=True", ""))
        on = run_in_pty([sys.executable, "prog.py"], tmp_path, env={"CONVEYOR_PROGRESS": "1"})
        off = run_in_pty([sys.executable, "prog.py"], tmp_path)
        assert _frames(on.output, "step")
        assert _frames(off.output, "step") == []

    def test_without_rich_a_warning_says_how_to_install_it(self, slow_flow: Path) -> None:
        """Where rich is missing, the flow still runs and one warning names the extra."""
        code = (
            "import sys; sys.modules['rich'] = None\n"
            "from conveyor.cli import main\n"
            "sys.exit(main(['run', 'slow.py:slow']))\n"
        )
        result = run_in_pty([sys.executable, "-c", code], slow_flow)
        assert result.returncode == 0, result.output
        assert 'pip install "conveyor[progress]"' in result.output
        assert result.output.count("Live progress needs rich") == 1
        assert "task runs: 42 Completed, 2 Failed" in result.output


class TestPipe:
    def test_a_pipe_gets_no_progress(self, slow_flow: Path) -> None:
        """In a pipe conveyor run shows no display and writes no terminal codes."""
        proc = run_cli("run", "slow.py:slow", cwd=slow_flow)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b[" not in proc.stdout + proc.stderr
        assert "pending" not in proc.stdout + proc.stderr
        assert "task runs: 42 Completed, 2 Failed" in proc.stdout
