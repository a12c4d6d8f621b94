"""How the report is written: atomically, checked before the flow runs, and on every ending."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import flow, task
from conveyor.exceptions import ConfigError
from conveyor.report import check_report_path, write_report
from conveyor.testing import wait_until
from tests.console._support import clean_env, run_cli
from tests.report._support import MIXED_COUNTS, MIXED_FLOW, report_document, synthetic_record


@task
def boom() -> None:
    raise RuntimeError("the task broke")


def test_written_atomically_over_an_old_report(tmp_path: Path) -> None:
    """The new file replaces the old one whole; no temporary file is left in the folder."""
    target = tmp_path / "run.html"
    target.write_text("old")
    write_report(synthetic_record(50), target)
    assert report_document(target)["flow"]["run"] == "big-abcd1234"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.html"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A rename that fails (a folder where the file should be) raises and cleans up."""
    (tmp_path / "run.html").mkdir()
    with pytest.raises(OSError):
        write_report(synthetic_record(5), tmp_path / "run.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.html"]


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("missing/run.html", "does not exist"),
        ("folder", "is a folder"),
        ("/proc/conveyor-run.html", "cannot be written"),
    ],
)
def test_an_unwritable_path_is_one_config_error(tmp_path: Path, where: str, words: str) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match=words):
        check_report_path(tmp_path / where)


def test_an_unwritable_path_stops_the_flow_before_it_runs(tmp_path: Path) -> None:
    """The API raises ConfigError from the call; nothing ran."""
    ran: list[int] = []

    @flow(runner="concurrent", report="/proc/conveyor-run.html")
    def noted() -> None:
        ran.append(1)

    with pytest.raises(ConfigError, match="cannot be written"):
        noted()
    assert ran == []


def test_the_cli_refuses_an_unwritable_path_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "mixed.py").write_text(
        MIXED_FLOW.replace("def mixed(", "def mixed_(")
        + """
@flow
def mixed() -> None:
    pathlib.Path("ran").touch()
"""
    )
    proc = run_cli("run", "mixed.py:mixed", "--report", "nowhere/run.html", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Report folder" in lines[0] and "does not exist" in lines[0]
    assert not (tmp_path / "ran").exists()


def test_a_failed_flow_writes_its_report(tmp_path: Path) -> None:
    """with_options(report=...): the flow body raised, the report says so and lists the run."""

    @flow(runner="concurrent")
    def broken() -> None:
        boom.submit().result()

    target = tmp_path / "run.html"
    state = broken.with_options(report=target)(return_state=True)
    assert state.is_failed()
    data = report_document(target)
    assert data["flow"]["state"] == "Failed" and "the task broke" in data["flow"]["message"]
    messages = [f["message"] for f in data["failures"]]
    assert any("the task broke" in m for m in messages)


def test_the_cli_writes_the_report_of_a_mixed_flow(tmp_path: Path) -> None:
    (tmp_path / "mixed.py").write_text(MIXED_FLOW)
    proc = run_cli("run", "mixed.py:mixed", "--report", "run.html", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # after-1 never ran, and nobody checked
    data = report_document(tmp_path / "run.html")
    assert {t["name"]: t["states"] for t in data["tasks"]} == MIXED_COUNTS
    assert data["flow"]["state"] == "Failed" and "after-1" in data["flow"]["message"]


def test_ctrl_c_writes_a_report_that_says_interrupted(tmp_path: Path) -> None:
    """A real CLI in its own process group, SIGINT to the group as a terminal sends it."""
    (tmp_path / "mixed.py").write_text(MIXED_FLOW)
    with open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "run",
                "mixed.py:long",
                "--report",
                "run.html",
                "--no-progress",
                "--runner",
                "concurrent",
            ],
            cwd=tmp_path,
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        started = wait_until(lambda: len(list(tmp_path.glob("started-*"))) == 2, 60)
        assert started, (tmp_path / "err.txt").read_text()
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 130, (tmp_path / "err.txt").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    data = report_document(tmp_path / "run.html")
    assert data["flow"]["interrupted"] == "Ctrl-C (SIGINT)"
    assert data["flow"]["state"] == "Cancelled"
    assert sum(data["counts"].values()) == 2
    assert not [p for p in tmp_path.iterdir() if re.match(r"\..*\.tmp$", p.name)]
