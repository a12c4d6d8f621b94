"""Shared pieces of the staying-power tests of every backend: interrupts and soak bookkeeping."""

from __future__ import annotations

import functools
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

import conveyor
from conveyor import flow, task
from conveyor.testing import wait_until
from tests._support import RUN_BUDGET_BYTES, peak_rss_growth

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


# The same flow as a plain Python program that calls it (the runner comes from CONVEYOR_RUNNER).
# When the call ends (by the KeyboardInterrupt, which then propagates out of the program) it
# prints the last state of every task run, the non-daemon threads, and the processes it still
# has, waiting at most 5 s for them to end: a program that goes on after catching the
# interrupt must not keep the runner's cluster.
LONG_PROGRAM = (
    LONG_FLOW
    + """
import json, threading
import psutil
from conveyor import hookimpl
from conveyor.plugins.manager import get_host

last = {}

class Observer:
    @hookimpl
    def conveyor_task_run_state_changed(self, future, old, new):
        last[future.name] = new.name

def processes_left():
    left = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                left.append(" ".join(child.cmdline()))
        except psutil.Error:
            continue
    return left

if __name__ == "__main__":  # Dask's worker processes are spawned: they import this module
    get_host().register(Observer(), name="observer")
    try:
        long()
    finally:
        print("states: " + json.dumps(last), flush=True)
        print("non-daemon threads: " + json.dumps(
            [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
        ), flush=True)
        deadline = time.monotonic() + 5
        while processes_left() and time.monotonic() < deadline:
            time.sleep(0.05)
        print("processes: " + json.dumps(processes_left()), flush=True)
"""
)

SHUTDOWN_MARK = "every run is final, the runner stops"

# The flow of `conveyor run`, printing a line the moment its 4 runs are all final: after an
# interrupt that is when the flow run has cancelled them and goes on to stop its runner.
SHUTDOWN_MARKED_FLOW = (
    LONG_FLOW
    + """
from conveyor import hookimpl
from conveyor.plugins.manager import get_host

class ShutdownMarker:
    def __init__(self):
        self.final = set()

    @hookimpl
    def conveyor_task_run_state_changed(self, future, old, new):
        if new.is_final():
            self.final.add(future.name)
            if len(self.final) == 4:
                print(MARK, flush=True)

get_host().register(ShutdownMarker(), name="shutdown-marker")
"""
    + f"MARK = {SHUTDOWN_MARK!r}\n"
)


# The marked flow as a plain Python program that calls it.
SHUTDOWN_MARKED_PROGRAM = (
    SHUTDOWN_MARKED_FLOW
    + """
if __name__ == "__main__":  # Dask's worker processes are spawned: they import this module
    long()
"""
)


def backend_env(runner: str | None = None) -> dict[str, str]:
    """This environment without CONVEYOR_* (plus CONVEYOR_RUNNER=``runner``), Ray on loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if runner is not None:
        env["CONVEYOR_RUNNER"] = runner
    return env


class Watched:
    """
    A child process, with its output read line by line as it comes and every descendant
    process it ever had recorded: the tree is walked while it runs, also while it shuts down,
    and once it exited, processes that inherited its environment tag are swept up too (a
    descendant whose parent died is re-parented, out of the tree).
    """

    WALK_EVERY = 0.1
    TAG = "STAYING_POWER_TAG"

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.tag = uuid.uuid4().hex
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env={**env, self.TAG: self.tag},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.seen: dict[int, psutil.Process] = {}
        self.out: list[str] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._cond:
                lines.append(line)
                self._cond.notify_all()

    def walk(self) -> bool:
        """Record the process's descendants; False once it has exited."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return False
        for child in children:
            self.seen.setdefault(child.pid, child)
        return self.proc.poll() is None

    def wait_for(self, condition: Callable[[], object], limit: float) -> bool:
        """
        Walk the tree until ``condition()`` (checked at once when a line arrives) holds, the
        process exits, or ``limit`` seconds pass; return whether the condition holds.
        """
        deadline = time.monotonic() + limit
        while True:
            with self._cond:
                if self._cond.wait_for(condition, timeout=self.WALK_EVERY):
                    return True
            if not self.walk() or time.monotonic() > deadline:
                return bool(condition())

    def printed(self, text: str) -> bool:
        """Whether a line of stdout or stderr so far contains ``text``."""
        with self._cond:
            return any(text in line for line in self.out + self.err)

    def finish(self, limit: float) -> float:
        """Walk the tree until the process exits (at most ``limit`` s); return how long it took."""
        start = time.monotonic()
        deadline = start + limit
        while self.walk() and time.monotonic() < deadline:
            try:
                self.proc.wait(self.WALK_EVERY)
            except subprocess.TimeoutExpired:
                continue
        took = time.monotonic() - start
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sweep()
        for reader in self._readers:  # EOF comes once every holder of the pipes is gone
            reader.join(15)
        return took

    def sweep(self) -> None:
        """Record every other process that carries this process's environment tag."""
        for proc in psutil.process_iter():
            try:
                if proc.pid != self.proc.pid and proc.environ().get(self.TAG) == self.tag:
                    self.seen.setdefault(proc.pid, proc)
            except psutil.Error:
                continue

    def leftovers(self) -> list[int]:
        """The processes it started that still run (walked, or swept up now)."""
        self.sweep()
        return alive(self.pids)

    def describe(self, pids: list[int]) -> list[str]:
        """The PIDs with their command lines (for failure messages)."""
        described = []
        for pid in pids:
            try:
                described.append(f"{pid} {' '.join(self.seen[pid].cmdline())[:160]}")
            except psutil.Error:
                described.append(str(pid))
        return described

    @property
    def pids(self) -> set[int]:
        return set(self.seen)

    def stdout(self) -> str:
        with self._cond:
            return "".join(self.out)

    def stderr(self) -> str:
        with self._cond:
            return "".join(self.err)

    def close(self) -> None:
        """Kill the process and whatever it left running (processes this test started)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sweep()
        for child in self.seen.values():
            try:
                child.kill()  # psutil refuses if the PID now belongs to another process
            except psutil.Error:
                continue
        for reader in self._readers:
            reader.join(15)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def started_task(tmp_path: Path) -> Callable[[], bool]:
    """A condition: a task of the long flow, run in ``tmp_path``, has started."""
    return lambda: any(tmp_path.glob("started-*"))


def start_conveyor_run(tmp_path: Path, runner: str, source: str = LONG_FLOW) -> Watched:
    """`conveyor run pipeline.py:long --runner <runner>` of ``source``, in ``tmp_path``."""
    (tmp_path / "pipeline.py").write_text(source)
    return Watched(
        [sys.executable, "-m", "conveyor", "run", "pipeline.py:long", "--runner", runner],
        tmp_path,
        backend_env(),
    )


def signal_once_started(run: Watched, tmp_path: Path, sig: int = signal.SIGINT) -> None:
    """Send ``sig`` to ``run`` once a task of the long flow started (in ``tmp_path``)."""
    assert run.wait_for(started_task(tmp_path), limit=120), run.stdout() + run.stderr()
    run.walk()
    run.proc.send_signal(sig)


def check_signal_stops_everything(tmp_path: Path, runner: str, sig: int, code: int) -> None:
    """A signal mid-flow: exit 128+signal within 15 s, runs Cancelled, every process gone."""
    run = start_conveyor_run(tmp_path, runner)
    try:
        signal_once_started(run, tmp_path, sig)
        took = run.finish(limit=30)
        out = run.stdout()
        assert run.proc.returncode == code, out + run.stderr()
        assert took < 15, f"exited {took:.1f} s after the signal"
        assert "Cancelled" in out
        assert run.seen, f"the {runner} runner started no processes?"
        assert wait_until(lambda: not run.leftovers(), 15), run.describe(run.leftovers())
    finally:
        run.close()


def _interrupt_twice(run: Watched, tmp_path: Path, runner: str) -> float:
    """
    SIGINT to ``run`` once a task started; a second SIGINT once it printed SHUTDOWN_MARK (its
    runs are final and the runner is stopping). Returns the seconds it took to exit after that.
    """
    signal_once_started(run, tmp_path)
    assert run.seen, f"the {runner} runner started no processes?"
    assert run.wait_for(lambda: run.printed(SHUTDOWN_MARK), limit=15), run.stdout() + run.stderr()
    assert run.proc.poll() is None, "it exited before the second interrupt"
    run.proc.send_signal(signal.SIGINT)
    return run.finish(limit=15)


def check_second_interrupt_stops_everything(tmp_path: Path, runner: str) -> None:
    """
    `conveyor run` on ``runner`` gets SIGINT mid-flow, and a second SIGINT once its shutdown
    has begun (its runs are cancelled and the runner is stopping): it exits at once with 130,
    and every process it started is gone.
    """
    run = start_conveyor_run(tmp_path, runner, SHUTDOWN_MARKED_FLOW)
    try:
        first = time.monotonic()
        took = _interrupt_twice(run, tmp_path, runner)
        second = time.monotonic() - took
        out, err = run.stdout(), run.stderr()
        # Proof that the second signal cut the shutdown short: it says so, it did not get as
        # far as the summary, and it took far less than the shutdown it interrupted.
        assert run.proc.returncode == 130, out + err
        assert "second interrupt" in err, out + err
        assert "task runs:" not in out, out
        assert took < 5, (
            f"{took:.1f} s after the second SIGINT ({second - first:.1f} s after the first)"
        )
        assert wait_until(lambda: not run.leftovers(), 15), run.describe(run.leftovers())
    finally:
        run.close()


def check_program_second_interrupt(tmp_path: Path, runner: str) -> None:
    """
    A plain Python program calling the long flow on ``runner`` gets SIGINT once a task started,
    and a second SIGINT once the flow's shutdown began (its runs are cancelled, the runner is
    stopping): it dies of that second KeyboardInterrupt at once, and every process it started
    is gone afterwards.
    """
    (tmp_path / "prog.py").write_text(SHUTDOWN_MARKED_PROGRAM)
    run = Watched([sys.executable, "prog.py"], tmp_path, backend_env(runner))
    try:
        took = _interrupt_twice(run, tmp_path, runner)
        err = run.stderr()
        # Python dies of SIGINT. (Were a local Ray still up at exit, Ray's exit handler would make
        # that status 1: the runner shuts down the Ray it started before the interrupt goes on.)
        assert run.proc.returncode == -signal.SIGINT, (run.proc.returncode, run.stdout() + err)
        # The cluster's processes may still log to the same stderr after the program died.
        assert "\nKeyboardInterrupt\n" in err, err
        # Where the second interrupt landed is a race the test cannot win every time: in the
        # handling of the first (cancelling the runs), in the flow's shutdown after that (ending
        # the flow run, stopping its runner), in a finalizer run during it (a backend client's
        # `__del__`, which Python reports as ignored), or, once that shutdown was over, in the
        # interpreter's exit. Each must end the program at once, which is what is checked.
        swallowed = "Exception ignored in" in err
        bound = 15 if swallowed else 5
        assert took < bound, f"{took:.1f} s after the second SIGINT"
        assert wait_until(lambda: not run.leftovers(), 15), run.describe(run.leftovers())
    finally:
        run.close()


def check_program_interrupt(tmp_path: Path, runner: str, in_flight: int) -> None:
    """
    A plain Python program calling the long flow on ``runner`` gets SIGINT once a task started:
    the KeyboardInterrupt propagates out of the program within 15 s (its traceback ends the
    output, and Python then dies of SIGINT: status 130 in a shell), its ``in_flight`` runs are
    Cancelled, no non-daemon thread is left, the runner's processes are gone by the time the
    flow call returns, and every process it started is gone after it exited.
    """
    (tmp_path / "prog.py").write_text(LONG_PROGRAM)
    run = Watched([sys.executable, "prog.py"], tmp_path, backend_env(runner))
    try:
        signal_once_started(run, tmp_path)
        took = run.finish(limit=30)
        out, err = run.stdout(), run.stderr()
        assert took < 15, f"exited {took:.1f} s after SIGINT"
        assert run.proc.returncode == -signal.SIGINT, out + err
        assert err.rstrip().splitlines()[-1] == "KeyboardInterrupt", err
        states = json.loads(_after(out, "states: "))
        assert sorted(states.values()) == ["Cancelled"] * in_flight, states
        assert json.loads(_after(out, "non-daemon threads: ")) == [], out
        # Once the flow call returned, the runner's processes are gone: all but the helper
        # that multiprocessing starts once per program (for the spawned Dask workers), which
        # lives as long as the program, as it does without conveyor.
        left = json.loads(_after(out, "processes: "))
        assert [c for c in left if "multiprocessing.resource_tracker" not in c] == [], left
        if runner != "sequential":
            assert run.seen, f"the {runner} runner started no processes?"
        assert wait_until(lambda: not run.leftovers(), 15), run.describe(run.leftovers())
    finally:
        run.close()


def _after(out: str, prefix: str) -> str:
    """The rest of the line of ``out`` that starts with ``prefix``."""
    for line in out.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :]
    raise AssertionError(f"no line {prefix!r} in:\n{out}")


@task
def payload(i: int) -> bytes:
    """4 KiB of data: too big to travel inline, so it stays on the backend until gathered."""
    return os.urandom(4096) + bytes([i % 256])


@task
def inc(i: int) -> int:
    return i + 1


def check_map_scale(runner: Any, n: int = 20_000) -> None:
    """
    A .map of ``inc`` over ``n`` items on ``runner``, results gathered: every result right, and
    the driver's peak RSS grows by less than the per-run budget (after a first, smaller map
    paid the one-time costs: imports, the backend's buffers).
    """

    @flow(runner=runner)
    def big(items: int) -> int:
        return sum(conveyor.gather(inc.map(range(items))))

    big(1000)
    with peak_rss_growth() as growth:
        assert big(n) == sum(range(1, n + 1))
    assert growth[0] / n < RUN_BUDGET_BYTES, f"{growth[0] / n:.0f} B per run"


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
    to flow 50, kept the same threads and child processes, and opened fewer than 10 more files.
    """
    usage: dict[int, Usage] = {}
    for k in range(50):
        assert one(k) == expected
        gc.collect()
        assert wait_until(settled, 30), f"flow {k} left work behind on the backend"
        if k in (9, 49):
            usage[k] = Usage()
    first, last = usage[9], usage[49]
    assert (last.rss - first.rss) / 2**20 < 30
    assert last.threads == first.threads
    # A leak of one connection per flow would add 40 or more (80 with both ends in this process,
    # as a LocalCluster's scheduler is); the backend's own connection pools may open a connection
    # or two more as load varies (2 fds each here; CI once saw more than +2), which is not a leak.
    assert last.fds - first.fds < 10, (first.fds, last.fds)
    assert last.children == first.children


class Usage:
    """
    This process's RSS, threads, open files and child processes, for soak comparisons.

    Only direct children count: what a flow's runner starts (a cluster's nannies, a local Ray's
    GCS and raylet) is a child of this process, while the long-lived cluster the soak runs on
    replaces its own workers (a grandchild of this process) when it likes.
    """

    def __init__(self) -> None:
        me = psutil.Process()
        self.rss = me.memory_info().rss
        self.threads = {t for t in threading.enumerate() if not t.daemon}
        self.fds = me.num_fds()
        self.children = {c.pid for c in me.children(recursive=False)}


def check_group_interrupt(tmp_path: Path, runner: str, tries: int = 10) -> None:
    """
    Ctrl-C from a terminal, ``tries`` times: `conveyor run pipeline.py:long --runner <runner>`
    runs in a process group of its own with its output going to a file (buffered, as when it
    is redirected), and SIGINT goes to the whole group, workers included, as a terminal sends
    it. Each time it exits with 130 within 15 s, and no process of the group is left.
    """
    (tmp_path / "pipeline.py").write_text(LONG_FLOW)
    env = backend_env()
    env.pop("PYTHONUNBUFFERED", None)
    outcomes = []
    for attempt in range(tries):
        folder = tmp_path / f"try-{attempt}"
        folder.mkdir()
        (folder / "pipeline.py").write_text(LONG_FLOW)
        with open(folder / "out.txt", "w") as out, open(folder / "err.txt", "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "run", "pipeline.py:long", "--runner", runner],
                cwd=folder,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, as a shell job has
            )
        group = proc.pid
        try:
            assert wait_until(started_task(folder), 120), (folder / "err.txt").read_text()
            members = _group_members(group)
            start = time.monotonic()
            os.killpg(group, signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                outcomes.append(f"try {attempt}: still running 15 s after the SIGINT")
                continue
            took = time.monotonic() - start
            gone = functools.partial(_all_gone, members, group)
            left = wait_until(gone, 15)
            if proc.returncode != 130 or not left:
                outcomes.append(
                    f"try {attempt}: exit {proc.returncode} after {took:.1f} s, "
                    f"left {alive(members | _group_members(group))}"
                )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pid in alive(_group_members(group)):
                try:
                    psutil.Process(pid).kill()  # a process this test started, by its group
                except psutil.Error:
                    continue
    assert outcomes == [], outcomes


def _all_gone(members: set[int], group: int) -> bool:
    return not alive(members | _group_members(group))


def _group_members(group: int) -> set[int]:
    """The PIDs of the living processes in process group ``group``."""
    found = set()
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == group:
                found.add(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found
