"""Shared pieces of the staying-power tests of every backend: interrupts and soak bookkeeping."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from conveyor import task
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


def check_signal_stops_everything(tmp_path: Path, runner: str, sig: int, code: int) -> None:
    """A signal mid-flow: exit 128+signal within 15 s, runs Cancelled, every process gone."""
    code_seen, out, seen, took = interrupt_run(tmp_path, runner, sig)
    assert code_seen == code, out
    assert took < 15
    assert "Cancelled" in out
    assert seen, f"the {runner} runner started no processes?"
    assert wait_until(lambda: not alive(seen), limit=15), alive(seen)


@task
def payload(i: int) -> bytes:
    """4 KiB of data: too big to travel inline, so it stays on the backend until gathered."""
    return os.urandom(4096) + bytes([i % 256])


@task
def inc(i: int) -> int:
    return i + 1


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


def soak(one: Callable[[int], object], expected: object, settled: Callable[[], bool]) -> None:
    """
    Run ``one(k)`` for 50 flows; after each, ``settled()`` must become true (the backend holds
    nothing of the finished flow). Then check that the driver grew less than 30 MB from flow 10
    to flow 50 and kept the same threads, files and child processes.
    """
    usage: dict[int, Usage] = {}
    for k in range(50):
        assert one(k) == expected
        gc.collect()
        assert wait_until(settled, limit=30), f"flow {k} left work behind on the backend"
        if k in (9, 49):
            usage[k] = Usage()
    first, last = usage[9], usage[49]
    assert (last.rss - first.rss) / 2**20 < 30
    assert last.threads == first.threads
    assert last.fds <= first.fds + 2
    assert last.children == first.children


class Usage:
    """This process's RSS, threads, open files and children, for soak comparisons."""

    def __init__(self) -> None:
        me = psutil.Process()
        self.rss = me.memory_info().rss
        self.threads = {t for t in threading.enumerate() if not t.daemon}
        self.fds = me.num_fds()
        self.children = {c.pid for c in me.children(recursive=True)}
