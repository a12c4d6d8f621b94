"""Faults on real clusters: each ends as the fault table of the plugin's README says."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_dask")

from conveyor import CrashedRun, StateType, current_flow_run, flow, task, unmapped
from conveyor.testing import wait_until
from conveyor_dask import DaskRunner
from tests.dask._support import count_runs


@task
def touch(folder: str, name: str, seconds: float = 0.0) -> str:
    import time

    from tests.dask._support import record

    record(folder, name)
    time.sleep(seconds)
    return name


@task
def die(folder: str, how: str) -> None:
    import os
    import signal

    from tests.dask._support import record

    record(folder, "culprit")
    if how == "exit":
        os._exit(1)
    os.kill(os.getpid(), signal.SIGKILL)


@task
def die_after_others(folder: str, others: int) -> None:
    """Record a start, wait (bounded) until ``others`` quick runs finished, then kill the worker."""
    import os
    import time
    from pathlib import Path

    from tests.dask._support import record

    record(folder, "culprit")
    deadline = time.monotonic() + 120
    while len(list(Path(folder).glob("q.*"))) < others and time.monotonic() < deadline:
        time.sleep(0.05)
    os._exit(1)


@task
def sleeper(folder: str, name: str, seconds: float) -> str:
    import time

    from tests.dask._support import record

    record(folder, f"{name}-start")
    time.sleep(seconds)
    record(folder, f"{name}-end")
    return name


@pytest.fixture
def runner(cluster: Any) -> DaskRunner:
    return DaskRunner(address=cluster.scheduler_address)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _owned() -> DaskRunner:
    return DaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1})


class TestWorkerDeath:
    @pytest.mark.parametrize("how", ["exit", "sigkill"])
    def test_killing_the_worker_crashes_only_that_run(
        self, runner: DaskRunner, runs_dir: Path, how: str
    ) -> None:
        """A task that kills its worker is CRASHED (worker-died) within 15 s; the others complete, each run once."""

        @flow(runner=runner)
        def f() -> Any:
            t0 = time.monotonic()
            bad = die.submit(str(runs_dir), how)
            good = [touch.submit(str(runs_dir), f"ok{i}", 0.5) for i in range(4)]
            state = bad.wait(15)
            elapsed = time.monotonic() - t0
            finals = [g.wait(60) for g in good]
            values = []
            for g in good:  # a result held only by the dead worker is lost, never recomputed
                try:
                    values.append(g.result())
                except CrashedRun as exc:
                    assert exc.reason == "result-lost"
                    values.append(None)
            return state, elapsed, finals, values

        state, elapsed, finals, values = f()
        assert state is not None, "the culprit was not final within 15 s"
        assert state.type is StateType.CRASHED and state.reason == "worker-died"
        assert elapsed < 15
        # Every innocent run completes: one that ran on the dying worker before it died is
        # COMPLETED (the worker hands its finish to the scheduler before the next body
        # starts), and only its value may be lost with the worker; one queued there is
        # resubmitted, since its body never started.
        assert all(s is not None and s.is_completed() for s in finals), finals
        assert set(values) <= {None, *(f"ok{i}" for i in range(4))}
        for i in range(4):
            assert count_runs(runs_dir, f"ok{i}") == 1
        assert count_runs(runs_dir, "culprit") == 1  # it announced its start: not resubmitted

    def test_runs_that_finished_just_before_the_culprit_complete(
        self, runner: DaskRunner, runs_dir: Path
    ) -> None:
        """
        Quick runs finish on a worker moments before a run kills it (the race where the
        worker's "finished" messages used to die with it): in 4 rounds, every innocent run
        is COMPLETED and ran once, and each culprit is CRASHED and ran once.
        """

        @flow(runner=runner)
        def f() -> Any:
            client = current_flow_run().runner.client
            rounds = []
            for r in range(4):
                before = [touch.submit(str(runs_dir), f"r{r}-b{i}") for i in range(4)]
                bad = die.submit(str(runs_dir), "exit")
                after = [touch.submit(str(runs_dir), f"r{r}-a{i}") for i in range(2)]
                culprit = bad.wait(60)
                finals = [g.wait(60) for g in before + after]
                rounds.append((culprit, finals))
                client.wait_for_workers(2, timeout=60)  # the nanny brings the worker back
            return rounds

        for culprit, finals in f():
            assert culprit is not None and culprit.reason == "worker-died", culprit
            assert all(s is not None and s.is_completed() for s in finals), finals
        for r in range(4):
            for name in [*(f"b{i}" for i in range(4)), "a0", "a1"]:
                assert count_runs(runs_dir, f"r{r}-{name}") == 1
        assert count_runs(runs_dir, "culprit") == 4

    def test_a_long_running_culprit_is_told_from_a_queued_run(
        self, runner: DaskRunner, runs_dir: Path
    ) -> None:
        """
        A run that kills its worker after 1,200 other runs started elsewhere (more than the
        scheduler's log of events keeps) is still known to have started there: it is CRASHED
        and runs once, and is not resubmitted to kill another worker.
        """
        n = 1200

        @flow(runner=runner)
        def f() -> Any:
            bad = die_after_others.submit(str(runs_dir), n)
            quick = touch.map(unmapped(str(runs_dir)), ["q"] * (n + 40))
            culprit = bad.wait(120)
            return culprit, [q.wait(120) for q in quick]

        culprit, finals = f()
        assert culprit is not None and culprit.reason == "worker-died", culprit
        assert all(s is not None and s.is_completed() for s in finals)
        assert count_runs(runs_dir, "culprit") == 1
        assert count_runs(runs_dir, "q") == n + 40

    def test_completed_run_stays_completed_after_its_worker_dies(
        self, runner: DaskRunner, runs_dir: Path, cluster: Any
    ) -> None:
        """A worker lost after a run completed neither recomputes it nor changes its state."""
        import signal

        from distributed import Client

        @flow(runner=runner)
        def f() -> Any:
            fut = touch.submit(str(runs_dir), "done")
            state = fut.wait(30)
            assert state is not None and state.is_completed()
            ref = state.data
            with Client(cluster, set_as_default=False) as c:
                holder = next(iter(c.who_has([ref.future])[ref.future.key]))
                pid = c.run(os.getpid, workers=[holder])[holder]
                os.kill(pid, signal.SIGKILL)
                wait_until(
                    lambda: holder not in c.scheduler_info(n_workers=-1)["workers"],
                    30,
                    what="the scheduler to drop the killed worker",
                )
            with pytest.raises(CrashedRun) as info:
                fut.result()
            return fut.state, info.value.reason

        state, reason = f()
        assert state.is_completed()
        assert reason == "result-lost"
        assert count_runs(runs_dir, "done") == 1
        with Client(cluster, set_as_default=False) as c:  # the nanny brings a worker back
            c.wait_for_workers(2, timeout=30)


class TestTimeoutAndCancel:
    def test_timed_out_task_does_not_starve_later_work(self, runs_dir: Path) -> None:
        """After a timed-out 60 s task on 2 workers, four 1 s runs finish within 10 s."""

        @flow(runner=_owned())
        def f() -> Any:
            stuck = sleeper.with_options(timeout_seconds=2).submit(str(runs_dir), "stuck", 60)
            t0 = time.monotonic()
            state = stuck.wait(10)
            timed_out_after = time.monotonic() - t0
            t1 = time.monotonic()
            quick = [sleeper.submit(str(runs_dir), f"q{i}", 1) for i in range(4)]
            values = [q.result(timeout=30) for q in quick]
            return state, timed_out_after, time.monotonic() - t1, values

        state, timed_out_after, quick_time, values = f()
        assert state is not None and state.name == "TimedOut"
        assert state.reason == "stopped"
        assert timed_out_after < 5
        assert values == [f"q{i}" for i in range(4)]
        assert quick_time < 10
        assert count_runs(runs_dir, "stuck-end") == 0

    def test_cancel_pending_and_running(self, runs_dir: Path) -> None:
        """cancel() stops a pending run (its body never runs) and, on an owned cluster, a running one."""

        @flow(runner=_owned())
        def f() -> Any:
            folder = str(runs_dir)
            busy = [sleeper.submit(folder, "busy0", 30), sleeper.submit(folder, "busy1", 3)]
            wait_until(
                lambda: count_runs(runs_dir, "busy0-start") and count_runs(runs_dir, "busy1-start"),
                30,
                what="both workers to be busy",
            )
            pending = sleeper.submit(folder, "pending", 0)
            assert pending.cancel()
            busy[0].cancel()
            pid = int(next(runs_dir.glob("busy0-start.*")).read_text())
            wait_until(
                lambda: not _alive(pid), 5, what="the cancelled task's worker process to stop"
            )
            states = [busy[0].wait(5), pending.wait(5), busy[1].wait(30)]
            after = sleeper.submit(folder, "after", 0).result(timeout=30)
            return states, after

        (running, pending, other), after = f()
        assert pending.type is StateType.CANCELLED
        assert running.type is StateType.CANCELLED and running.reason == "stopped"
        assert other.is_completed()
        assert after == "after"
        assert count_runs(runs_dir, "pending-start") == 0
        assert count_runs(runs_dir, "busy0-end") == 0


class TestBackendLoss:
    def test_closing_the_cluster_crashes_every_inflight_run(self, runs_dir: Path) -> None:
        """Closing the cluster mid-flow makes every in-flight run CRASHED (backend-lost) within 30 s."""

        @flow(runner=_owned())
        def f() -> Any:
            runner = current_flow_run().runner  # type: ignore[union-attr]
            futs = [sleeper.submit(str(runs_dir), f"s{i}", 3) for i in range(6)]
            wait_until(
                lambda: count_runs(runs_dir, "s0-start") or count_runs(runs_dir, "s1-start"),
                30,
                what="a run to start",
            )
            closer = threading.Thread(target=runner.cluster.close)
            t0 = time.monotonic()
            closer.start()
            states = [fut.wait(30) for fut in futs]
            elapsed = time.monotonic() - t0
            closer.join(30)
            late = sleeper.submit(str(runs_dir), "late", 0).wait(30)
            return states, elapsed, late

        states, elapsed, late = f(return_state=True).result()
        assert all(s is not None for s in states), "a run was not final within 30 s"
        assert elapsed < 30
        for s in states:
            assert s.is_completed() or (
                s.type is StateType.CRASHED and s.reason == "backend-lost"
            ), s
        assert any(s.is_crashed() for s in states)
        assert late is not None and late.type is StateType.CRASHED and late.reason == "backend-lost"
