"""Interrupts, teardown on failure, scale and the documented limits of threads (core runners)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import attrs
import psutil
import pytest

from conveyor import Runner, flow, task
from conveyor.runners import ConcurrentRunner, SequentialRunner
from conveyor.testing import wait_until
from tests._staying_power import LONG_FLOW, check_group_interrupt, check_program_interrupt
from tests._support import RUN_BUDGET_BYTES, peak_rss_growth

STUBBORN_RUNNER_FLOW = """
import pathlib, subprocess, sys, time
import attrs
from conveyor import flow, task
from conveyor.runners import ConcurrentRunner

@attrs.define(kw_only=True)
class Stubborn(ConcurrentRunner):
    name = "stubborn"
    _child: object = attrs.field(default=None, init=False, eq=False, repr=False)

    def on_start(self):
        super().on_start()
        # a backend process this runner owns, like a scheduler
        self._child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        pathlib.Path("child.pid").write_text(str(self._child.pid))

    def on_stop(self):
        pathlib.Path("stopping").touch()
        time.sleep(120)  # a shutdown that hangs

@task
def slow(i):
    pathlib.Path(f"started-{i}").touch()
    time.sleep(120)

@flow(runner=Stubborn(max_workers=2))
def long():
    for f in slow.map(range(2)):
        f.result()
"""


def _start(tmp_path: Path, source: str, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "pipeline.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "run", "pipeline.py:long", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


class TestInterrupts:
    @pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
    @pytest.mark.parametrize("runner", ["sequential", "concurrent"])
    def test_signal_mid_flow(self, tmp_path: Path, sig: int, code: int, runner: str) -> None:
        """A signal mid-flow exits within 15 s with 128+signal, reporting in-flight runs CANCELLED."""
        proc = _start(tmp_path, LONG_FLOW, "--runner", runner)
        try:
            assert wait_until(lambda: any(tmp_path.glob("started-*")), 30)
            start = time.monotonic()
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=15)
            assert time.monotonic() - start < 15
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == code, err
        assert ": Cancelled" in out
        assert "Cancelled" in out.split("task runs:")[-1]
        assert "Traceback" not in err

    def test_second_interrupt_exits_at_once_and_leaves_nothing(self, tmp_path: Path) -> None:
        """A second Ctrl-C during a hanging shutdown exits at once and kills what was started."""
        proc = _start(tmp_path, STUBBORN_RUNNER_FLOW)
        child = None
        try:
            assert wait_until(
                lambda: (tmp_path / "child.pid").exists() and any(tmp_path.glob("started-*"))
            )
            child = int((tmp_path / "child.pid").read_text())
            assert psutil.pid_exists(child)
            proc.send_signal(signal.SIGINT)
            assert wait_until(lambda: (tmp_path / "stopping").exists())
            start = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
            assert time.monotonic() - start < 10
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130
        assert "second interrupt" in err
        assert wait_until(
            lambda: (
                not psutil.pid_exists(child)
                or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
            ),
            10,
        )

    def test_keyboard_interrupt_in_a_program(self) -> None:
        """A program whose flow gets KeyboardInterrupt: runs are cancelled, the interrupt propagates."""
        futures: list[Any] = []

        @task
        def slow_task() -> None:
            time.sleep(0.5)

        @flow(runner=ConcurrentRunner(max_workers=1))
        def interrupted() -> None:
            futures.extend(slow_task.map(range(3)))
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            interrupted()
        assert all(f.done() for f in futures)
        assert [f.state.name for f in futures].count("Cancelled") >= 2

    def test_sigint_to_a_program_on_sequential(self, tmp_path: Path) -> None:
        """
        `python prog.py` calling a flow on sequential gets SIGINT while a task runs: the
        KeyboardInterrupt propagates within 15 s, the running run is Cancelled, nothing is left.
        """
        check_program_interrupt(tmp_path, "sequential", in_flight=1)


class TestTeardown:
    def test_runner_failing_halfway_through_start_is_torn_down(self) -> None:
        """A runner whose start fails halfway releases what it made, and its error is raised."""
        events: list[str] = []

        @attrs.define(kw_only=True)
        class HalfStart(Runner):
            name = "halfstart"

            def on_start(self) -> None:
                events.append("first worker started")
                raise ConnectionError("second worker failed")

            def on_stop(self) -> None:
                events.append("torn down")

        @flow(runner=HalfStart())
        def f() -> None:
            events.append("body")

        with pytest.raises(ConnectionError, match="second worker failed"):
            f()
        assert events == ["first worker started", "torn down"]


class TestThreadLimits:
    @pytest.mark.parametrize("runner", ["sequential", "concurrent"])
    def test_os_exit_takes_the_process_down(self, tmp_path: Path, runner: str) -> None:
        """As documented: on thread runners a task that calls os._exit ends the whole program."""
        script = tmp_path / "exits.py"
        script.write_text(
            textwrap.dedent(f"""
            import os
            from conveyor import flow, task

            @task
            def die():
                os._exit(7)

            @flow(runner={runner!r})
            def f():
                die.submit().wait()
                print("survived")

            f()
        """)
        )
        proc = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 7
        assert "survived" not in proc.stdout

    def test_readme_documents_it(self) -> None:
        """The README says so and names the runners to use instead."""
        readme = (Path(__file__).parent.parent / "README.md").read_text()
        assert "os._exit" in readme and "For isolation on one machine use `processes`" in readme


class TestScale:
    def test_map_100k_on_concurrent(self) -> None:
        """
        .map over 100,000 items on concurrent: every run final and every result right, and the
        driver's peak memory grows by less than 2 KB per run.
        """

        @task
        def inc(x: int) -> int:
            return x + 1

        @flow(runner=ConcurrentRunner(max_workers=4))
        def big() -> int:
            return sum(f.result() for f in inc.map(range(100_000)))

        with peak_rss_growth() as growth:
            assert big() == sum(range(1, 100_001))
        # Every future is kept until the sum is done: the driver's peak stays within budget.
        assert growth[0] / 100_000 < RUN_BUDGET_BYTES, f"{growth[0] / 100_000:.0f} B per run"

    def test_lazy_map_keeps_a_bounded_window(self) -> None:
        """A map over a generator never has more than map_window runs submitted ahead."""
        pulled = [0]
        consumed = [0]
        ahead: list[int] = []

        def items(n: int) -> Any:
            for i in range(n):
                pulled[0] += 1
                yield i

        @task(map_window=50)
        def double(x: int) -> int:
            return 2 * x

        @flow(runner=ConcurrentRunner(max_workers=2))
        def streamed() -> int:
            total = 0
            for fut in double.map(items(5_000)):
                ahead.append(pulled[0] - consumed[0])
                total += fut.result()
                consumed[0] += 1
            return total

        assert streamed() == 2 * sum(range(5_000))
        assert consumed[0] == pulled[0] == 5_000
        assert max(ahead) <= 50

    def test_lazy_map_with_static_arguments(self) -> None:
        """A lazy map zips iterables and passes unmapped and plain values whole."""

        @task
        def add(x: int, y: int) -> int:
            return x + y

        @flow(runner=SequentialRunner())
        def streamed() -> list[int]:
            return [f.result() for f in add.map(iter([1, 2, 3]), y=10)]

        assert streamed() == [11, 12, 13]


def test_eager_map_keeps_at_most_map_window_runs_unfinished() -> None:
    """A map over a list waits for its oldest runs so at most map_window are unfinished."""
    import threading

    from conveyor import hookimpl
    from conveyor.plugins import PluginHost, use_host

    class Unfinished:
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.now = 0
            self.peak = 0

        @hookimpl
        def conveyor_task_run_state_changed(self, future: Any, old: Any, new: Any) -> None:
            with self.lock:
                if old.name == "Pending" and new.name == "Running":
                    self.now += 1
                    self.peak = max(self.peak, self.now)
                elif new.is_final():
                    self.now -= 1

    counter = Unfinished()

    @task(map_window=8)
    def slowish(x: int) -> int:
        time.sleep(0.001)
        return x

    @flow(runner=ConcurrentRunner(max_workers=4))
    def mapped() -> int:
        return sum(f.result() for f in slowish.map(range(400)))

    with use_host(PluginHost(entry_points=False, extra_plugins=[("count", counter)])):
        assert mapped() == sum(range(400))
    assert 0 < counter.peak <= 9


@pytest.mark.timeout(600)
def test_ctrl_c_to_the_process_group_ten_times_on_concurrent(tmp_path: Path) -> None:
    """SIGINT to the whole process group of `conveyor run --runner concurrent`, output to a
    file, 10 times in 10: exit 130 within 15 s each time, with no process left."""
    check_group_interrupt(tmp_path, "concurrent", tries=10)
