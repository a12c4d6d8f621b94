"""How the processes runner runs work: reused workers, queueing, async, futures, logs, options."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conveyor import BackendUnavailable, ConfigError, flow
from conveyor.runners.processes import ProcessesRunner
from conveyor.testing import wait_until
from tests.processes import _support as s

BOUND = s.BOUND


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A folder where task bodies record each execution."""
    folder = tmp_path / "runs"
    folder.mkdir()
    return folder


class TestWorkers:
    @pytest.mark.parametrize("method", ["forkserver", "spawn"])
    def test_workers_are_reused(self, method: str) -> None:
        """Forty runs on two workers run in two processes, neither of them the driver."""

        @flow(runner=ProcessesRunner(max_workers=2, start_method=method))
        def f() -> set[int]:
            return {x.result(timeout=BOUND) for x in s.pid_of.map(range(40))}

        pids = f()
        assert len(pids) <= 2 and os.getpid() not in pids

    def test_a_free_worker_takes_queued_work_while_another_is_busy(self, runs: Path) -> None:
        """While one worker is held by a run, every queued run completes on the other one."""

        @flow(runner=ProcessesRunner(max_workers=2))
        def f() -> tuple[list[str], bool]:
            gate = runs / "gate"
            held = s.wait_for.submit(str(gate), BOUND)
            quick = [s.touch.submit(str(runs), f"q{i}") for i in range(8)]
            done = [q.result(timeout=BOUND) for q in quick]
            still_held = not held.done()
            gate.touch()
            assert held.result(timeout=BOUND)
            return done, still_held

        done, still_held = f()
        assert done == [f"q{i}" for i in range(8)]
        assert still_held

    def test_max_tasks_per_child_replaces_workers(self) -> None:
        """With max_tasks_per_child=2, six runs on one worker run in three processes."""

        @flow(runner=ProcessesRunner(max_workers=1, max_tasks_per_child=2))
        def f() -> list[int]:
            return [x.result(timeout=BOUND) for x in s.pid_of.map(range(6))]

        pids = f()
        assert len(set(pids)) == 3
        assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]

    def test_async_tasks_run_on_an_event_loop_in_a_worker(self) -> None:
        """An async task runs in a worker process, on a running event loop there."""

        @flow(runner=ProcessesRunner(max_workers=2))
        def f() -> list[tuple[int, bool]]:
            return [x.result(timeout=BOUND) for x in s.async_pid.map(range(4))]

        results = f()
        assert all(pid != os.getpid() and running for pid, running in results)


class TestFutures:
    def test_an_upstream_value_reaches_the_downstream_run(self) -> None:
        """A value made in one worker is the argument of a run in another (via the driver)."""

        @flow(runner=ProcessesRunner(max_workers=2))
        def f() -> int:
            a = s.add.submit(1, 2)
            b = s.add.submit(a, 10)
            return s.add.submit(b, a).result(timeout=BOUND)

        assert f() == 16

    def test_a_waiting_run_holds_no_worker(self, runs: Path) -> None:
        """On two workers, a run waiting on a blocked upstream run leaves the second worker
        free: a later run opens the gate, and all three complete."""

        @flow(runner=ProcessesRunner(max_workers=2))
        def f() -> list[Any]:
            gate = str(runs / "gate")
            upstream = s.wait_for.submit(gate, 20.0)  # False if the gate never opens
            downstream = s.takes.submit(upstream, str(runs))
            s.open_gate.submit(gate)
            return [upstream.result(timeout=BOUND), downstream.result(timeout=BOUND)]

        assert f() == [True, "bool"]


class TestLogsAndPrints:
    def test_worker_logs_reach_the_driver_with_the_run_names(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Records logged in a worker are handled in the driver, with the run's names."""
        caplog.set_level(logging.INFO)

        @flow(runner=ProcessesRunner(max_workers=2))
        def f() -> int:
            return s.logs.submit("hello").result(timeout=BOUND)

        pid = f()
        mine = [r for r in caplog.records if "says hello" in r.getMessage()]
        assert {r.name for r in mine} == {"conveyor.runs", "some.library"}
        assert {r.task_run_name for r in mine} == {"logs-1"}  # type: ignore[attr-defined]
        assert all(r.flow_run_name.startswith("f-") for r in mine)  # type: ignore[attr-defined]
        assert {r.process for r in mine} == {pid}

    def test_prints_reach_the_driver_s_output_once(self, tmp_path: Path) -> None:
        """A script's task prints appear on the driver's stdout, and its logging records
        once, with the run names (the worker re-imports the script's basicConfig but prints
        nothing itself)."""
        script = tmp_path / "printing.py"
        script.write_text(
            textwrap.dedent("""
            import logging
            from conveyor import flow, get_run_logger, task
            from conveyor.run_logging import RUN_FORMAT

            logging.basicConfig(level=logging.INFO, format=RUN_FORMAT)

            @task
            def speak(i):
                print(f"printed {i}")
                get_run_logger().info("logged %d", i)

            @flow(runner="processes")
            def talk():
                for f in speak.map(range(3)):
                    f.result()

            if __name__ == "__main__":
                talk()
            """)
        )
        proc = subprocess.run(
            [sys.executable, str(script)], env=s.env(), capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert sorted(proc.stdout.splitlines()) == [f"printed {i}" for i in range(3)]
        logged = [line for line in proc.stderr.splitlines() if "logged" in line]
        assert len(logged) == 3, proc.stderr
        assert all("/speak-" in line for line in logged)


class TestOptions:
    def test_initializer_by_dotted_name_and_by_callable(self) -> None:
        """Each worker calls the initializer, given by dotted name or as a callable, with
        initargs, before it runs a task."""
        for initializer in ("tests.processes._support:remember", s.remember):

            @flow(runner=ProcessesRunner(max_workers=1, initializer=initializer, initargs=[1, "a"]))
            def f() -> Any:
                return s.initialized.submit().result(timeout=BOUND)

            assert f() == [(1, "a")]

    def test_an_initializer_that_raises_fails_the_start(self) -> None:
        """An initializer that raises fails the runner's start with a sentence naming it and
        the error, the worker's traceback attached."""

        @flow(runner=ProcessesRunner(max_workers=2, initializer=s.broken_initializer))
        def f() -> None:
            pass

        with pytest.raises(BackendUnavailable, match=r"initializer .*raised ValueError") as info:
            f()
        assert isinstance(info.value.__cause__, ValueError)

    def test_an_initializer_that_cannot_be_imported_is_a_config_error(self) -> None:
        """An initializer name that does not import is refused when the runner starts."""

        @flow(runner=ProcessesRunner(initializer="no_such_module.setup"))
        def f() -> None:
            pass

        with pytest.raises(ConfigError, match="cannot be imported"):
            f()

    @pytest.mark.parametrize(
        ("options", "fix"),
        [
            ({"start_method": "fork"}, "fork copies the driver"),
            ({"start_method": "thread"}, "give 'forkserver' or 'spawn'"),
            ({"max_workers": 0}, "whole number of 1 or more"),
            ({"max_tasks_per_child": 0}, "whole number of 1 or more"),
            ({"memory_limit": "lots"}, "size such as '512 MiB'"),
            ({"initializer": 3}, "callable or its dotted name"),
            ({"initializer": "setup"}, "callable or its dotted name"),
            ({"cancel_grace_seconds": -1}, "number of seconds above 0"),
        ],
    )
    def test_bad_options_are_refused_with_the_fix(self, options: dict[str, Any], fix: str) -> None:
        """A bad option raises ConfigError naming it and the fix; fork says why it is refused."""
        with pytest.raises(ConfigError, match="ProcessesRunner: `") as info:
            ProcessesRunner(**options)
        assert fix in str(info.value)

    def test_options_from_config_and_defaults(self) -> None:
        """Sizes read as bytes, lists become tuples, and the runner pickles as its options."""
        runner = ProcessesRunner(memory_limit="1.5 GiB", initargs=[1, 2])
        assert runner.initargs == (1, 2)
        assert runner.start_method == ("forkserver" if sys.platform == "linux" else "spawn")
        assert runner.max_workers >= 1
        assert pickle.loads(pickle.dumps(runner)) == runner

    def test_without_cloudpickle_the_start_says_how_to_install_it(self) -> None:
        """Where cloudpickle cannot be imported, the runner's start says to install it."""
        code = textwrap.dedent("""
            import sys
            sys.modules["cloudpickle"] = None  # as if it were not installed
            from conveyor import ConfigError, flow
            from conveyor.runners.processes import ProcessesRunner

            @flow(runner=ProcessesRunner(max_workers=1))
            def f():
                pass

            if __name__ == "__main__":
                try:
                    f()
                except ConfigError as exc:
                    print(exc)
            """)
        proc = subprocess.run(
            [sys.executable, "-c", code], env=s.env(), capture_output=True, text=True, timeout=120
        )
        assert "install it with `pip install cloudpickle`" in proc.stdout, proc.stderr

    def test_listed_and_selected_by_name(self, tmp_path: Path) -> None:
        """`conveyor runners` lists processes with its capabilities, from the core."""
        proc = subprocess.run(
            [sys.executable, "-m", "conveyor", "runners"],
            env=s.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        line = next(x for x in proc.stdout.splitlines() if x.startswith("processes"))
        assert line.split()[1:4] == ["conveyor", line.split()[2], "parallel"]
        assert "hard_timeouts, cancel_running, isolation" in line

    def test_listing_imports_no_multiprocessing(self) -> None:
        """import conveyor and listing the runners import no multiprocessing."""
        code = (
            "import sys, conveyor\nfrom conveyor.cli import main\nmain(['runners'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('multiprocessing')))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], env=s.env(), capture_output=True, text=True, timeout=120
        )
        assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stderr


def test_wordcount_example_runs_on_processes(tmp_path: Path) -> None:
    """CONVEYOR_RUNNER=processes python examples/wordcount.py counts the words."""
    proc = subprocess.run(
        [sys.executable, str(s.ROOT / "examples" / "wordcount.py"), str(tmp_path)],
        env={**s.env(), "CONVEYOR_RUNNER": "processes"},
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert len(rows) == 10
    assert wait_until(lambda: len(list(tmp_path.glob("part-*.txt"))) == 16, 5)
