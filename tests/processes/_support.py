"""
Tasks, values and process-tree helpers shared by the processes runner's tests.

The tasks live in this importable module so the workers unpickle them by reference. A body
that must be counted records each execution as a file ``<name>.<uuid>`` in a folder, so tests
count executions across processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from conveyor import get_run_logger, task
from conveyor.testing import wait_until

BOUND = 60.0
ROOT = Path(__file__).resolve().parent.parent.parent


# -- counting executions ------------------------------------------------------------------------


def record(folder: str, name: str) -> None:
    """Note one execution of ``name`` (with this process's pid) in ``folder``, atomically."""
    key = uuid.uuid4().hex
    draft = Path(folder) / f".draft-{key}"
    draft.write_text(str(os.getpid()))
    draft.replace(Path(folder) / f"{name}.{key}")


def count_runs(folder: Path, name: str) -> int:
    """How many times ``name`` was recorded in ``folder``."""
    return len(list(folder.glob(f"{name}.*")))


def recorded_pid(folder: Path, name: str) -> int:
    """The pid of the (first) process that recorded ``name``."""
    return int(next(folder.glob(f"{name}.*")).read_text())


# -- tasks --------------------------------------------------------------------------------------


@task
def pid_of(i: int) -> int:
    return os.getpid()


@task
def touch(folder: str, name: str, seconds: float = 0.0) -> str:
    record(folder, name)
    time.sleep(seconds)
    return name


@task
def sleeper(folder: str, name: str, seconds: float) -> str:
    record(folder, f"{name}-start")
    time.sleep(seconds)
    record(folder, f"{name}-end")
    return name


@task
def stubborn(folder: str, seconds: float) -> str:
    """Swallows the SIGTERM the runner sends, and goes on sleeping."""
    record(folder, "stubborn-start")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except BaseException:
            record(folder, "stubborn-swallowed")
    record(folder, "stubborn-end")
    return "done"


@task
def wait_for(path: str, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.01)
    return False


@task
def open_gate(path: str) -> None:
    Path(path).touch()


@task
def die(folder: str, how: str) -> None:
    record(folder, "culprit")
    if how == "exit":
        os._exit(3)
    os.kill(os.getpid(), signal.SIGKILL)


@task
def returns(kind: str) -> Any:
    if kind == "lock":
        return threading.Lock()
    if kind == "generator":
        return (c for c in "abc")
    raise ValueError(kind)


@task
def takes(value: Any, folder: str) -> str:
    record(folder, "takes")
    return type(value).__name__


@task
def logs(message: str) -> int:
    get_run_logger().warning("worker says %s", message)
    logging.getLogger("some.library").info("library says %s", message)
    return os.getpid()


@task
async def async_pid(x: int) -> tuple[int, bool]:
    import asyncio

    await asyncio.sleep(0.01)
    return os.getpid(), asyncio.get_running_loop().is_running()


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def hog(size: int) -> int:
    return len(bytearray(size))


# -- values that pickle in one process and not in another ---------------------------------------


def _explode_in(pid: int) -> Any:
    if os.getpid() == pid:
        raise RuntimeError("unpickle bomb")
    return "defused"


class BombInDriver:
    """Pickles everywhere; unpickling raises RuntimeError in the process ``pid`` only."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __reduce__(self) -> Any:
        return (_explode_in, (self.pid,))


def _explode() -> Any:
    raise RuntimeError("unpickle bomb")


class Bomb:
    """Pickles fine, raises RuntimeError when unpickled, wherever."""

    def __reduce__(self) -> Any:
        return (_explode, ())


@task
def returns_bomb_for(pid: int) -> BombInDriver:
    return BombInDriver(pid)


# -- initializers -------------------------------------------------------------------------------

INITIALIZED: list[Any] = []


def remember(*args: Any) -> None:
    """An initializer: note its arguments in this worker."""
    INITIALIZED.append(args)


def broken_initializer() -> None:
    raise ValueError("no database here")


@task
def initialized() -> list[Any]:
    # Through the module: a task travels by value (cloudpickle), with a copy of its globals.
    from tests.processes import _support

    return _support.INITIALIZED


# -- processes ----------------------------------------------------------------------------------


def descendants(pid: int | None = None) -> list[psutil.Process]:
    """The living (not zombie) descendants of ``pid`` (default: this process)."""
    found = []
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def describe(processes: list[psutil.Process]) -> list[str]:
    """Pids and command lines, for failure messages."""
    out = []
    for proc in processes:
        try:
            out.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            out.append(str(proc.pid))
    return out


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, limit: float = 15.0) -> None:
    """Wait (bounded) for ``pid`` to end."""
    wait_until(lambda: gone(pid), limit, what=f"process {pid} to end")


def env() -> dict[str, str]:
    """This environment without CONVEYOR_*, with this checkout first on the path."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    clean["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "core"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return clean


class Job:
    """
    A program run in a process group of its own, as a terminal runs a job, with its output
    read as it comes and every descendant process it had recorded while it ran.
    """

    def __init__(self, args: list[str], cwd: Path, extra_env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env={**env(), **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.seen: dict[int, psutil.Process] = {}
        self._lines: dict[str, list[str]] = {"out": [], "err": []}
        self._readers = [
            threading.Thread(target=self._read, args=(stream, self._lines[key]), daemon=True)
            for key, stream in (("out", self.proc.stdout), ("err", self.proc.stderr))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def walk(self) -> bool:
        """Record the job's descendants; False once it has exited."""
        for child in descendants(self.proc.pid):
            self.seen.setdefault(child.pid, child)
        return self.proc.poll() is None

    def wait_for(self, condition: Any, limit: float = BOUND) -> None:
        """Walk the tree until ``condition()`` holds (bounded); fail with the output if not."""

        def check() -> bool:
            self.walk()
            return bool(condition())

        if not wait_until(check, limit, interval=0.02):
            raise AssertionError(f"timed out; output:\n{self.stdout()}\n{self.stderr()}")
        # What made the condition true (a worker that wrote its file) may have started after
        # the last walk: walk once more, so the caller's view of the tree includes it.
        self.walk()

    def signal(self, sig: int = signal.SIGINT) -> None:
        """Send ``sig`` to the job's whole process group, as a terminal does on Ctrl-C."""
        self.walk()
        os.killpg(self.proc.pid, sig)

    def finish(self, limit: float = BOUND) -> float:
        """Wait (bounded) for the job to exit, walking its tree; the seconds it took."""
        start = time.monotonic()
        while self.walk() and time.monotonic() - start < limit:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0.02)
        took = time.monotonic() - start
        if self.proc.poll() is None:
            self.close()
            raise AssertionError(f"it did not exit within {limit} s:\n{self.stderr()}")
        for reader in self._readers:
            reader.join(BOUND)
        return took

    def leftovers(self, settle: float = 5.0) -> list[psutil.Process]:
        """
        The processes the job had that still run, ``settle`` seconds (at most) after it
        exited: a worker the driver SIGKILLed as it exited may take a moment to be reaped on a
        loaded machine; one that is still running after that was left behind.
        """

        def alive() -> list[psutil.Process]:
            return [p for p in self.seen.values() if not gone(p.pid)]

        wait_until(lambda: not alive(), settle, interval=0.02)
        return alive()

    def stdout(self) -> str:
        return "".join(self._lines["out"])

    def stderr(self) -> str:
        return "".join(self._lines["err"])

    def close(self) -> None:
        """Kill the job and whatever it left (processes this test started)."""
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(BOUND)
        for child in self.seen.values():
            with contextlib.suppress(psutil.Error):
                child.kill()
        for reader in self._readers:
            reader.join(BOUND)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
