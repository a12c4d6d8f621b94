"""
Tasks for the Ray tests, in a module Ray workers can import (the cluster's PYTHONPATH has it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from conveyor import flow, get_run_logger, task
from conveyor.testing._tasks import bump, count

__all__ = ["bump", "count"]


class Tracer:
    """A value that records, in a file, every process that unpickles it."""

    def __init__(self, path: str, size: int = 10) -> None:
        self.path = path
        self.payload = b"x" * size

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_tracer, (self.path, len(self.payload)))


def _rebuild_tracer(path: str, size: int) -> Tracer:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    return Tracer(path, size)


def unpicklers(path: str) -> list[int]:
    """The PIDs that unpickled a Tracer writing to ``path``."""
    p = Path(path)
    return [int(x) for x in p.read_text().split()] if p.exists() else []


class CustomError(Exception):
    """An exception class defined in the tests."""


class Unpicklable:
    """Pickles, but fails to unpickle anywhere."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_explode, ("unpickle bomb",))


def _explode(message: str) -> None:
    raise RuntimeError(message)


@task
def make_tracer(path: str) -> Tracer:
    return Tracer(path)


@task
def pass_tracer(t: Tracer) -> Tracer:
    assert isinstance(t, Tracer)
    return t


@task
def tracer_size(t: Tracer) -> int:
    return len(t.payload)


@task
def pid() -> int:
    return os.getpid()


@task
async def async_pid(x: int) -> tuple[int, int]:
    import anyio

    await anyio.sleep(0.01)
    return x * 2, os.getpid()


@task
def raise_value(message: str) -> None:
    raise ValueError(message)


@task
def raise_custom(message: str) -> None:
    raise CustomError(message)


@task
def exit_code(code: int) -> None:
    sys.exit(code)


@task
def hard_exit(path: str) -> None:
    bump(path)
    os._exit(1)


@task
def kill_self(path: str) -> None:
    bump(path)
    os.kill(os.getpid(), signal.SIGKILL)


@task
def exit_first_time(path: str) -> int:
    n = bump(path)
    if n == 1:
        os._exit(1)
    return n


@task
def make_generator(n: int) -> Any:
    return (i for i in range(n))


@task
def make_lock() -> Any:
    return threading.Lock()


@task
def takes(value: Any, path: str) -> str:
    bump(path)
    return type(value).__name__


@task
def slow_ok(seconds: float) -> str:
    time.sleep(seconds)
    return "ok"


@task
def stubborn_heartbeat(path: str, beats: int, interval: float) -> int:
    """A heartbeat that swallows KeyboardInterrupt: only a forced cancel stops it."""
    done = 0
    while done < beats:
        try:
            bump(path)
            time.sleep(interval)
            done += 1
        except KeyboardInterrupt:
            continue
    return done


@task
def log_something(word: str) -> int:
    get_run_logger().warning("the worker says %s", word)
    logging.getLogger("user.module").info("plain logger says %s", word)
    return os.getpid()


@task
def assigned() -> dict[str, float]:
    import ray

    return dict(ray.get_runtime_context().get_assigned_resources())


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def inc_array(a: Any) -> Any:
    return a + 1


@task
def nested_outer(k: int) -> int:
    """Runs a whole flow on Ray from inside a Ray task."""
    from conveyor_ray import RayRunner

    @flow(runner=RayRunner())
    def inner(k: int) -> int:
        a = add.submit(k, 1)
        b = add.submit(a, 1)
        return b.result(timeout=60)

    return inner(k)


@task
def pair(x: int, y: int) -> list[int]:
    """A result too big to travel inline with the outcome: it stays in the object store."""
    return [x, y]


@task
def array_info(a: Any) -> tuple[float, bool]:
    """The array's sum (its length for an array of objects), and whether it is writeable."""
    total = float(len(a)) if a.dtype.hasobject else float(a.sum())
    return total, bool(a.flags.writeable)
