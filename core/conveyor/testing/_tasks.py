"""
Tasks the conformance suite runs. They live in an importable module so that runners that
execute tasks in other processes can unpickle them by reference.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import anyio

from conveyor.tasks import task


def bump(path: str) -> int:
    """Append one line to ``path`` and return how many lines it now has (a run counter)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    return count(path)


def count(path: str) -> int:
    """How many times :func:`bump` ran on ``path``."""
    p = Path(path)
    return len(p.read_text(encoding="utf-8").splitlines()) if p.exists() else 0


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def identity(x: object) -> object:
    return x


@task
async def async_add(x: int, y: int) -> int:
    await anyio.sleep(0.01)
    return x + y


class ConformanceError(ValueError):
    """The error the failing tasks raise."""


@task
def fail(message: str) -> None:
    raise ConformanceError(message)


@task
def exit_task(code: int) -> None:
    sys.exit(code)


@task
def count_runs(path: str) -> int:
    return bump(path)


@task
def mark(value: object, path: str) -> object:
    bump(path)
    return value


@task
def flaky(path: str, failures: int) -> int:
    n = bump(path)
    if n <= failures:
        raise ConformanceError(f"attempt {n} fails on purpose")
    return n


@task
def sleep_then_mark(seconds: float, path: str) -> str:
    time.sleep(seconds)
    bump(path)
    return "slept"


@task
def heartbeat(path: str, beats: int, interval: float) -> int:
    for _ in range(beats):
        bump(path)
        time.sleep(interval)
    return beats


@task
def wait_for_file(path: str, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.02)
    return False


@task
def log_warning(message: str) -> str:
    """Log ``message`` at WARNING on a logger of its own, from wherever the task runs."""
    logging.getLogger("conveyor.conformance").warning(message)
    return message


@task
def exit_process(code: int) -> None:
    """End the process the task runs in at once, as a crash or the OOM killer would."""
    os._exit(code)


class DriverRefuses:
    """A value that unpickles anywhere but in the driver's process (pid ``driver``)."""

    def __init__(self, driver: int, value: int) -> None:
        self.driver = driver
        self.value = value

    def __reduce__(self) -> tuple[object, tuple[int, int]]:
        return (_rebuild_unless_driver, (self.driver, self.value))


def _rebuild_unless_driver(driver: int, value: int) -> DriverRefuses:
    if os.getpid() == driver:
        msg = "this value came through the driver, though the runner declares native futures"
        raise RuntimeError(msg)
    return DriverRefuses(driver, value)


@task
def make_driver_refuses(driver: int, value: int) -> DriverRefuses:
    return DriverRefuses(driver, value)


@task
def unwrap(box: DriverRefuses) -> int:
    return box.value
