"""Faults on real worker processes, each attributed to the one run it hit (RELIABILITY.md §6)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor import State, StateType, current_flow_run, flow
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


def _runner(**options: Any) -> ProcessesRunner:
    return ProcessesRunner(**{"max_workers": 2, "cancel_grace_seconds": 0.5, **options})


def _final(state: State[Any] | None) -> State[Any]:
    assert state is not None, "the run was not final in time"
    return state


class TestWorkerDeath:
    @pytest.mark.parametrize(
        ("how", "said"), [("exit", "exited with code 3"), ("sigkill", "was killed by SIGKILL")]
    )
    def test_a_dying_worker_crashes_only_its_run(self, runs: Path, how: str, said: str) -> None:
        """A task that kills its worker is CRASHED worker-died, saying how; the 6 others
        complete, each once, and the replaced worker takes later work."""

        @flow(runner=_runner())
        def f() -> tuple[State[Any], list[State[Any]], str]:
            bad = s.die.submit(str(runs), how)
            good = [s.touch.submit(str(runs), f"ok{i}", 0.1) for i in range(6)]
            culprit = _final(bad.wait(BOUND))
            finals = [_final(g.wait(BOUND)) for g in good]
            return culprit, finals, s.touch.submit(str(runs), "after").result(timeout=BOUND)

        culprit, finals, after = f()
        assert culprit.type is StateType.CRASHED
        assert culprit.reason == "worker-died"  # no OOM kill was counted: not oom-killed
        assert said in culprit.message and "die-1" in culprit.message
        assert all(state.is_completed() for state in finals), finals
        assert after == "after"
        assert count_each(runs, [f"ok{i}" for i in range(6)]) == [1] * 6
        assert s.count_runs(runs, "culprit") == 1

    def test_every_crash_in_a_map_is_its_own(self, runs: Path) -> None:
        """Among 24 runs where every fourth kills its worker, exactly those 6 are CRASHED and
        the 18 others complete once each."""

        @flow(runner=_runner())
        def f() -> list[State[Any]]:
            futures = [
                s.die.submit(str(runs), "exit")
                if i % 4 == 0
                else s.touch.submit(str(runs), f"ok{i}")
                for i in range(24)
            ]
            return [_final(fut.wait(BOUND)) for fut in futures]

        states = f()
        for i, state in enumerate(states):
            if i % 4 == 0:
                assert state.reason == "worker-died", state
            else:
                assert state.is_completed(), state
                assert s.count_runs(runs, f"ok{i}") == 1
        assert s.count_runs(runs, "culprit") == 6

    def test_a_killed_forkserver_loses_only_the_runs_in_flight(self, runs: Path) -> None:
        """SIGKILL to the forkserver mid-run: the two running runs are CRASHED backend-lost
        and their workers are killed (not left running unwatched); later runs complete on new
        workers."""
        import psutil

        @flow(runner=_runner())
        def f() -> tuple[list[State[Any]], list[str]]:
            busy = [s.sleeper.submit(str(runs), f"b{i}", 60) for i in range(2)]
            wait_until(
                lambda: s.count_runs(runs, "b0-start") and s.count_runs(runs, "b1-start"),
                BOUND,
                what="both workers to be busy",
            )
            server = psutil.Process(s.recorded_pid(runs, "b0-start")).ppid()
            assert server != os.getpid()
            os.kill(server, 9)
            states = [_final(b.wait(BOUND)) for b in busy]
            for i in range(2):
                s.wait_gone(s.recorded_pid(runs, f"b{i}-start"))
            later = [s.touch.submit(str(runs), f"q{i}") for i in range(3)]
            return states, [q.result(timeout=BOUND) for q in later]

        states, later = f()
        assert [x.reason for x in states] == ["backend-lost", "backend-lost"], states
        assert "forkserver ended" in states[0].message
        assert later == ["q0", "q1", "q2"]


class TestOomCount:
    def test_the_kernel_s_oom_count_is_found_and_read(self) -> None:
        """The runner reads the OOM-kill count of this process's memory cgroup (or of the
        machine), and claims no kill while none happened."""
        from conveyor.runners.processes.deaths import OomCounter

        counter = OomCounter()
        if counter.count() is None:
            pytest.skip(f"nothing counts OOM kills here ({counter.source} is not readable)")
        assert counter.source.name in {"memory.events", "memory.oom_control", "vmstat"}
        assert counter.claim() is False


def count_each(folder: Path, names: list[str]) -> list[int]:
    return [s.count_runs(folder, name) for name in names]


class TestSerialization:
    def test_unpicklable_argument_crashes_at_submit(self, runs: Path) -> None:
        """A lock as argument: submit() does not raise, the run is CRASHED
        argument-serialization naming the type at once, and its body never runs."""

        @flow(runner=_runner())
        def f() -> tuple[State[Any], str]:
            fut = s.takes.submit(threading.Lock(), str(runs))
            assert fut.done()
            return _final(fut.wait(0)), s.takes.submit(1, str(runs)).result(timeout=BOUND)

        state, after = f()
        assert state.type is StateType.CRASHED
        assert state.reason == "argument-serialization"
        assert "_thread.lock" in state.message
        assert after == "int"
        assert s.count_runs(runs, "takes") == 1

    @pytest.mark.parametrize(("kind", "type_name"), [("lock", "lock"), ("generator", "generator")])
    def test_unpicklable_result_crashes_and_the_pool_survives(
        self, kind: str, type_name: str
    ) -> None:
        """A lock or a generator returned: CRASHED result-serialization naming the type
        (never the generator's first item), and the next runs complete."""

        @flow(runner=_runner())
        def f() -> tuple[State[Any], list[int]]:
            state = _final(s.returns.submit(kind).wait(BOUND))
            return state, [x.result(timeout=BOUND) for x in s.add.map([1, 2, 3], [1, 1, 1])]

        state, after = f()
        assert state.type is StateType.CRASHED
        assert state.reason == "result-serialization"
        assert type_name in state.message
        assert after == [2, 3, 4]

    def test_result_that_cannot_be_unpickled_here(self) -> None:
        """A result that unpickles on the worker but not in the driver: CRASHED
        result-deserialization naming its type, not FAILED; the pool goes on."""

        @flow(runner=_runner())
        def f() -> tuple[State[Any], int]:
            state = _final(s.returns_bomb_for.submit(os.getpid()).wait(BOUND))
            return state, s.add.submit(1, 1).result(timeout=BOUND)

        state, after = f()
        assert state.type is StateType.CRASHED
        assert state.reason == "result-deserialization"
        assert "BombInDriver" in state.message and "unpickle bomb" in state.message
        assert after == 2

    def test_argument_that_cannot_be_unpickled_on_the_worker(self, runs: Path) -> None:
        """An argument that fails to unpickle on the worker: CRASHED argument-deserialization,
        its body never runs, and its siblings complete."""

        @flow(runner=_runner())
        def f() -> tuple[State[Any], list[str]]:
            bad = s.takes.submit(s.Bomb(), str(runs))
            good = [s.touch.submit(str(runs), f"ok{i}") for i in range(3)]
            return _final(bad.wait(BOUND)), [g.result(timeout=BOUND) for g in good]

        state, good = f()
        assert state.type is StateType.CRASHED
        assert state.reason == "argument-deserialization"
        assert "unpickle bomb" in state.message
        assert good == ["ok0", "ok1", "ok2"]
        assert s.count_runs(runs, "takes") == 0


class TestTimeoutsAndCancel:
    def test_timeout_kills_the_worker_and_later_work_runs(self, runs: Path) -> None:
        """A timed-out 60 s run is TimedOut stopped, its worker process ends and is replaced,
        and four later runs complete on the two workers."""

        @flow(runner=_runner())
        def f() -> tuple[State[Any], list[str]]:
            stuck = s.sleeper.with_options(timeout_seconds=3).submit(str(runs), "stuck", 60)
            wait_until(lambda: s.count_runs(runs, "stuck-start"), BOUND, what="the run to start")
            state = _final(stuck.wait(BOUND))
            s.wait_gone(s.recorded_pid(runs, "stuck-start"))
            later = [s.touch.submit(str(runs), f"q{i}") for i in range(4)]
            return state, [q.result(timeout=BOUND) for q in later]

        state, later = f()
        assert state.name == "TimedOut" and state.reason == "stopped"
        assert later == [f"q{i}" for i in range(4)]
        assert s.count_runs(runs, "stuck-end") == 0

    def test_cancel_pending_and_running(self, runs: Path) -> None:
        """cancel() of a queued run: it never starts; of a running one: its worker process
        ends (SIGTERM, then SIGKILL for a task that swallows it) and it is Cancelled stopped."""

        @flow(runner=_runner())
        def f() -> tuple[list[bool], list[State[Any]], str]:
            folder = str(runs)
            busy = [s.sleeper.submit(folder, "busy", 60), s.stubborn.submit(folder, 60)]
            wait_until(
                lambda: s.count_runs(runs, "busy-start") and s.count_runs(runs, "stubborn-start"),
                BOUND,
                what="both workers to be busy",
            )
            queued = s.touch.submit(folder, "queued")
            answers = [queued.cancel(), busy[0].cancel(), busy[1].cancel()]
            for name in ("busy-start", "stubborn-start"):
                s.wait_gone(s.recorded_pid(runs, name))
            states = [_final(x.wait(BOUND)) for x in (queued, *busy)]
            return answers, states, s.touch.submit(folder, "after").result(timeout=BOUND)

        answers, states, after = f()
        assert answers == [True, True, True]
        assert [x.type for x in states] == [StateType.CANCELLED] * 3
        assert [x.reason for x in states[1:]] == ["stopped", "stopped"]
        assert after == "after"
        assert s.count_runs(runs, "queued") == 0
        assert s.count_runs(runs, "busy-end") == s.count_runs(runs, "stubborn-end") == 0

    def test_a_queued_run_that_times_out_never_starts(self, runs: Path) -> None:
        """A run that times out while it waits for a worker never starts."""

        @flow(runner=_runner(max_workers=1))
        def f() -> State[Any]:
            gate = str(runs / "gate")
            blocker = s.wait_for.submit(gate, BOUND)
            queued = s.touch.with_options(timeout_seconds=0.3).submit(str(runs), "late")
            state = _final(queued.wait(BOUND))
            Path(gate).touch()
            blocker.result(timeout=BOUND)
            return state

        state = f()
        assert state.name == "TimedOut"
        assert s.count_runs(runs, "late") == 0


class TestMemory:
    def test_memory_limit_ends_a_hog_oom_killed(self) -> None:
        """Under memory_limit, a run that allocates past it is CRASHED oom-killed naming the
        limit; the worker goes on with the next runs."""

        @flow(runner=_runner(memory_limit="1 GiB"))
        def f() -> tuple[State[Any], list[int]]:
            state = _final(s.hog.submit(4 * 2**30).wait(BOUND))
            return state, [x.result(timeout=BOUND) for x in s.hog.map([2**20, 2**20])]

        state, after = f()
        assert state.type is StateType.CRASHED
        assert state.reason == "oom-killed"
        assert "memory_limit of 1024 MiB" in state.message
        assert after == [2**20, 2**20]

    def test_memory_error_without_a_limit_is_the_tasks_own(self) -> None:
        """Without a memory_limit, a MemoryError is the task's exception: FAILED."""

        @flow(runner=_runner())
        def f() -> State[Any]:
            return _final(s.hog.submit(2**62).wait(BOUND))

        state = f()
        assert state.type is StateType.FAILED
        assert isinstance(state.exception(), MemoryError)

    def test_a_limit_below_what_a_worker_uses_fails_the_start(self) -> None:
        """A memory_limit below an idle worker's address space fails the runner's start with a
        sentence saying so."""
        from conveyor import BackendUnavailable

        @flow(runner=_runner(memory_limit="8 MiB"))
        def f() -> None:
            pass

        with pytest.raises(BackendUnavailable, match="memory_limit of 8 MiB is below the"):
            f()


def test_the_flow_run_s_runner_is_processes() -> None:
    """Inside the flow, the flow run's runner is the started processes runner."""

    @flow(runner=_runner())
    def f() -> str:
        runner = current_flow_run().runner  # type: ignore[union-attr]
        return f"{runner.name} {runner.started}"

    assert f() == "processes True"
