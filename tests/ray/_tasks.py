"""
Tasks for the Ray tests, in a module Ray workers import as ``tests.ray._tasks``: the clusters the
tests start have the repository root on their PYTHONPATH (``_support.worker_env``), and Ray puts
the driver's working directory on its workers' path.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from conveyor import flow, get_run_logger, task
from conveyor.testing import wait_until
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
    """Kills its own worker process (SIGKILL on POSIX)."""
    bump(path)
    psutil.Process().kill()


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


def in_ray_worker() -> bool:
    """Whether conveyor-ray tells that this process is a Ray worker (a plain Ray task)."""
    import ray

    from conveyor_ray._internals import in_worker

    return in_worker(ray)


def fail_plainly() -> None:
    """A plain Ray task that raises."""
    raise ValueError("failed plainly")


# -- the out-of-memory test's tasks ---------------------------------------------------------------

# The hog grows in steps of this size.
CHUNK = 64 * 2**20


@task
def innocent(k: int, runs: str, started: str, release: str) -> int:
    """Counts its run, says it started, then waits (bounded) until the test releases it."""
    bump(runs)
    Path(started).write_text(str(os.getpid()), encoding="utf-8")
    if not wait_until(lambda: os.path.exists(release), 120.0, interval=0.05):
        raise TimeoutError(f"innocent {k} was never released")
    return k * k


@task
def hog(runs: str, cap_bytes: int, hold_seconds: float) -> int:
    """
    Counts its run and notes when it started, then grows by written (so resident) chunks up
    to ``cap_bytes`` and holds them; Ray's memory monitor should kill it on the way. Returns
    the chunks it held if it survived.
    """
    bump(runs)
    Path(f"{runs}.started").write_text(repr(time.time()), encoding="utf-8")
    held: list[bytes] = []
    while len(held) * CHUNK < cap_bytes:
        held.append(b"\x01" * CHUNK)  # memset: every page is touched, so it counts as used
        time.sleep(0.02)  # pace the growth, so the monitor sees the crossing before the cap
    deadline = time.monotonic() + hold_seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return len(held)


@task
def square(k: int) -> int:
    return k * k
