"""Shared pieces of the staying-power tests of every backend: interrupts and soak bookkeeping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from tests.helpers import wait_until

LONG_FLOW = """
import pathlib, time
from conveyor import flow, task

@task
def slow(i):
    pathlib.Path(f"started-{i}").touch()
    time.sleep(120)

@flow
def long():
    for f in slow.map(range(4)):
        f.result()
"""


def interrupt_run(
    tmp_path: Path, runner: str, sig: int = signal.SIGINT
) -> tuple[int, str, set[int], float]:
    """
    Start `conveyor run` of a long flow on ``runner``, send ``sig`` once a task started, and
    return (exit code, stdout, every descendant PID seen while it ran, seconds to exit).
    """
    (tmp_path / "pipeline.py").write_text(LONG_FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "run", "pipeline.py:long", "--runner", runner],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    try:

        def started() -> bool:
            try:
                seen.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                return True
            return any(tmp_path.glob("started-*"))

        assert wait_until(started, limit=120), "no task started"
        seen.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
        start = time.monotonic()
        proc.send_signal(sig)
        out, _err = proc.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, seen, took


def alive(pids: set[int]) -> list[int]:
    """The PIDs of ``pids`` that still run (zombies count as gone)."""
    living = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.append(pid)
        except psutil.NoSuchProcess:
            continue
    return living


class Usage:
    """This process's RSS, threads, open files and children, for soak comparisons."""

    def __init__(self) -> None:
        me = psutil.Process()
        self.rss = me.memory_info().rss
        self.threads = {t for t in threading.enumerate() if not t.daemon}
        self.fds = me.num_fds()
        self.children = {c.pid for c in me.children(recursive=True)}
