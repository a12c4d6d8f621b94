"""
The conformance cases that catch a runner that lies: each names the promise it checks, and
fails within seconds when the runner breaks it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor.flows import flow
from conveyor.futures import RunFuture
from conveyor.runners.protocol import ConcurrencyType, Runner
from conveyor.runners.remote import dumps
from conveyor.states import CrashReason, State, StateType
from conveyor.testing import _tasks as t
from conveyor.testing._waiting import wait_until

__all__ = ["RunnerPromises"]

# A quick run is reported within this many seconds by any honest runner on any machine.
REPORT_BOUND = 20.0
# How long a run that must never start is watched for.
NEVER_BOUND = 3.0
# Enough runs to fill every slot of any runner the suite meets, so that one more is queued.
FILLERS = 64


def _session_of(pid: int) -> int | None:
    """The session `pid` belongs to, or None once it is gone."""
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _settled(futures: list[RunFuture[Any]], runner: Runner) -> list[State[Any]]:
    """The futures' final states; fail naming the promise if some are not reported in time."""
    states = [f.wait(REPORT_BOUND) for f in futures]
    silent = [f.name for f, s in zip(futures, states, strict=True) if s is None]
    if silent:
        for f in futures:
            f.cancel()
        msg = (
            f"runner {runner.name!r} never reported {', '.join(silent)} within {REPORT_BOUND} s: "
            "a runner must report every attempt it is given, exactly once "
            "(attempt.succeed, attempt.fail or attempt.crash)"
        )
        raise AssertionError(msg)
    return [s for s in states if s is not None]


_ISOLATION_PROGRAM = """
import json, pickle, sys
from conveyor import flow
from conveyor.testing import _tasks as t

def dying(runner):
    @flow(runner=runner)
    def body():
        doomed = t.exit_process.submit(7)
        sibling = t.add.submit(2, 3)
        return [doomed.wait(60), sibling.wait(60)]

    return body()

if __name__ == "__main__":  # process runners re-import the main module in their workers
    states = dying(pickle.loads(open(sys.argv[1], "rb").read()))
    print(json.dumps([[s.type.value, s.reason] if s else None for s in states]))
"""


class RunnerPromises:
    """Cases that hold a runner to each promise of the runner guide."""

    def test_reports_every_attempt(self, runner: Runner) -> None:
        """Every attempt handed to the runner is reported, within seconds."""

        @flow(runner=runner)
        def quick() -> list[Any]:
            states = _settled([t.add.submit(1, 1), t.async_add.submit(1, 2)], runner)
            return [s.result() for s in states]  # inside: a value may live on the backend

        assert quick() == [2, 3]

    def test_a_run_cancelled_while_queued_never_runs(self, runner: Runner, tmp_path: Path) -> None:
        """A run cancelled while it waits in the runner's own queue never runs at all."""
        if runner.concurrency is ConcurrencyType.SEQUENTIAL:
            pytest.skip("a sequential runner has no queued runs: each run is final at submit")
        gate, marker = str(tmp_path / "gate"), str(tmp_path / "ran")

        @flow(runner=runner)
        def crowded() -> tuple[bool, State[Any], bool]:
            fillers = [t.wait_for_file.submit(gate, 30.0) for _ in range(FILLERS)]
            queued = t.mark.submit(None, marker)
            cancelled = queued.cancel()
            Path(gate).touch()
            _settled(fillers, runner)
            state = queued.wait(REPORT_BOUND)
            assert state is not None
            ran = wait_until(lambda: Path(marker).exists(), NEVER_BOUND)
            return cancelled, state, ran

        cancelled, state, ran = crowded()
        assert state.type is StateType.CANCELLED
        if cancelled and state.reason != "not-stopped":
            assert not ran, (
                f"runner {runner.name!r} ran a run it had confirmed cancelled while queued: "
                "cancel() may return True only if the work will never run"
            )

    def test_worker_logs_reach_the_driver(
        self, runner: Runner, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A record a task logs where it runs reaches the driver's logging, with its run name."""
        caplog.set_level(logging.WARNING, logger="conveyor.conformance")

        @flow(runner=runner)
        def logging_flow() -> str:
            future = t.log_warning.submit("a word from the task")
            _settled([future], runner)
            return future.name

        name = logging_flow()
        names = [
            getattr(r, "task_run_name", None)
            for r in caplog.records
            if r.name == "conveyor.conformance" and r.getMessage() == "a word from the task"
        ]
        assert name in names, (
            f"runner {runner.name!r} lost a task's log record: records made where a task runs "
            "must reach the driver's loggers with the run's names (see report_outcome)"
        )

    def test_isolation_is_what_it_claims(self, runner: Runner, tmp_path: Path) -> None:
        """A task that ends its own process: with isolation declared the caller survives and
        the run is CRASHED; without it the caller may die, as documented."""
        blob = tmp_path / "runner.pickle"
        blob.write_bytes(dumps(runner))
        program = tmp_path / "dying.py"
        program.write_text(_ISOLATION_PROGRAM)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
        proc = subprocess.run(
            [sys.executable, str(program), str(blob)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )
        if proc.returncode == 7:
            assert not runner.capabilities.isolation, (
                f"runner {runner.name!r} declares `isolation`, but a task calling os._exit(7) "
                "ended the caller's process"
            )
            return
        assert proc.returncode == 0, proc.stdout + proc.stderr
        doomed, sibling = json.loads(proc.stdout.strip().splitlines()[-1])
        assert doomed is not None and doomed[0] == "CRASHED", (
            f"runner {runner.name!r} reported a run whose process died as {doomed}: a dead "
            "worker's run is CRASHED (worker-died), never COMPLETED"
        )
        assert sibling == ["COMPLETED", None]

    def test_resources_are_honoured(self, runner: Runner) -> None:
        """Where the runner declares `resources`, a run asking for a resource no worker has
        never completes."""
        if not runner.capabilities.resources:
            pytest.skip(f"runner {runner.name!r} declares no resource requests")
        impossible = t.add.with_options(resources={"conveyor-conformance-nowhere": 1})

        @flow(runner=runner)
        def asking() -> State[Any] | None:
            future = impossible.submit(1, 1)
            state = future.wait(REPORT_BOUND)
            if state is None:
                future.cancel()  # still waiting for such a worker: honest
            return state

        state = asking()
        assert state is None or not state.is_completed(), (
            f"runner {runner.name!r} declares `resources` but completed a run asking for a "
            "resource no worker has"
        )
        if state is not None and state.is_crashed():
            assert state.reason is CrashReason.RESOURCES_UNAVAILABLE

    def test_native_futures_stay_on_the_backend(self, runner: Runner) -> None:
        """Where the runner declares `native_futures`, a future passed to another task never
        travels through the driver: a value that cannot be unpickled there still arrives."""
        if not runner.capabilities.native_futures:
            pytest.skip(f"runner {runner.name!r} declares no native futures")

        @flow(runner=runner)
        def passing() -> tuple[State[Any], Any]:
            box = t.make_driver_refuses.submit(os.getpid(), 42)
            (state,) = _settled([t.unwrap.submit(box)], runner)
            return state, state.result(raise_on_failure=False)

        state, value = passing()
        assert state.is_completed(), (
            f"runner {runner.name!r} declares `native_futures`, but the upstream value went "
            f"through the driver: {state.name}: {state.message}"
        )
        assert value == 42

    def test_stop_leaves_no_process_behind(self, runner: Runner) -> None:
        """Once a flow returned, no process its runner started is still alive."""
        psutil = pytest.importorskip("psutil", reason="the process check needs psutil")
        me = psutil.Process()
        before = {p.pid for p in me.children(recursive=True)}
        # A cluster that was running before the flow, in a session of its own (such as a
        # `ray start --block` or `dask scheduler` the test started), may start and end its own
        # workers at any time: those are the cluster's processes, not the runner's.
        foreign = {pid for pid in before if _session_of(pid) not in (None, os.getsid(0))}

        @flow(runner=runner)
        def some_work() -> list[int]:
            return [s.result() for s in _settled(t.add.map([1, 2], [3, 4]), runner)]

        assert some_work() == [4, 6]

        def leftovers() -> list[str]:
            found = []
            for child in me.children(recursive=True):
                try:
                    if (
                        child.pid not in before
                        and child.status() != psutil.STATUS_ZOMBIE
                        and not foreign.intersection(p.pid for p in child.parents())
                    ):
                        found.append(f"{child.pid} {' '.join(child.cmdline())[:100]}")
                except psutil.NoSuchProcess:
                    continue
            return found

        assert wait_until(lambda: not leftovers(), 15.0), (
            f"runner {runner.name!r} left processes running after stop(): {leftovers()}; "
            "on_stop must end every process on_start started"
        )
