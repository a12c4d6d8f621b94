"""Stop, Ctrl-C, a dead driver, an unguarded script, and scale, on real worker processes."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

import psutil
import pytest

from conveyor import flow
from conveyor.runners.processes import ProcessesRunner
from tests._staying_power import LONG_FLOW, SHUTDOWN_MARK, SHUTDOWN_MARKED_FLOW, check_map_scale
from tests.processes import _support as s

BOUND = s.BOUND

HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _kind(proc: psutil.Process) -> str:
    """A helper's module, or "worker" (forkserver workers are forks of the forkserver)."""
    cmd = _cmdline(proc)
    if HELPERS[1] in cmd or (HELPERS[0] in cmd and proc.ppid() == os.getpid()):
        return next(h for h in HELPERS if h in cmd)
    return "worker"


class TestStop:
    @pytest.mark.parametrize("method", ["forkserver", "spawn"])
    def test_stop_leaves_no_process(self, method: str) -> None:
        """A process-tree walk: while the flow runs, its workers (and the forkserver and resource
        tracker it started) are there; once the flow returned, none of them is left."""
        before = {p.pid for p in s.descendants()}

        @flow(runner=ProcessesRunner(max_workers=2, start_method=method))
        def f() -> dict[int, str]:
            assert s.add.submit(1, 2).result(timeout=BOUND) == 3
            return {p.pid: _kind(p) for p in s.descendants() if p.pid not in before}

        during = f()
        kinds = list(during.values())
        assert kinds.count("worker") == 2, during
        running_before = {_kind(psutil.Process(p)) for p in before}
        expected = {HELPERS[1]} if method == "spawn" else set(HELPERS)
        assert set(kinds) | running_before >= expected | {"worker"}, during
        for pid in during:
            s.wait_gone(pid)  # every one of them: they are gone when the flow returns
        assert not [p for p in s.descendants() if p.pid not in before]

    def test_two_runners_at_once_share_the_helpers_until_the_last_stops(self) -> None:
        """Two runners started together: stopping the first leaves the second working; after
        the second stops, nothing either started is left."""
        before = {p.pid for p in s.descendants()}
        first = ProcessesRunner(max_workers=1).start()
        second = ProcessesRunner(max_workers=1).start()
        try:
            first.stop()

            @flow(runner=second.duplicate())
            def f() -> int:
                return s.add.submit(2, 2).result(timeout=BOUND)

            assert f() == 4
        finally:
            first.stop()
            second.stop()
        left = [p for p in s.descendants() if p.pid not in before]
        for proc in left:
            s.wait_gone(proc.pid)

    def test_a_dead_driver_takes_its_workers_and_helpers_along(self, tmp_path: Path) -> None:
        """A driver killed by SIGKILL mid-flow: its workers (even mid-task), the forkserver and
        the resource tracker all end on their own."""
        (tmp_path / "prog.py").write_text(LONG_FLOW + '\nif __name__ == "__main__":\n    long()\n')
        job = s.Job([sys.executable, "prog.py"], tmp_path, {"CONVEYOR_RUNNER": "processes"})
        try:
            job.wait_for(lambda: len(list(tmp_path.glob("started-*"))) == 2)
            os.kill(job.proc.pid, signal.SIGKILL)
            job.finish()
            assert len(job.seen) >= 4, s.describe(list(job.seen.values()))  # 2 workers, 2 helpers
            for proc in job.seen.values():
                s.wait_gone(proc.pid, 30)
        finally:
            job.close()


def _conveyor_run(tmp_path: Path, source: str, options: str = "{}") -> s.Job:
    (tmp_path / "pipeline.py").write_text(source)
    return s.Job(
        [sys.executable, "-m", "conveyor", "run", "pipeline.py:long", "--runner", "processes"],
        tmp_path,
        {"CONVEYOR_RUNNER_OPTIONS": options},
    )


class TestInterrupts:
    @pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
    def test_conveyor_run_interrupted_mid_flow(self, tmp_path: Path, sig: int, code: int) -> None:
        """A signal to the process group mid-flow: `conveyor run` exits 128+signal (bounded at
        15 s against hangs; bench_processes.py times it), its runs are Cancelled, no worker
        prints a traceback, and no process it started is left."""
        job = _conveyor_run(tmp_path, LONG_FLOW)
        try:
            job.wait_for(lambda: len(list(tmp_path.glob("started-*"))) == 2)
            job.signal(sig)
            took = job.finish()
            out, err = job.stdout(), job.stderr()
            assert job.proc.returncode == code, out + err
            assert took < 15
            assert "task runs: 4 Cancelled" in out, out
            assert "Traceback" not in err, err
            assert len(job.seen) >= 3, s.describe(list(job.seen.values()))
            assert not job.leftovers(), s.describe(job.leftovers())
        finally:
            job.close()

    def test_ctrl_c_in_a_program_leaves_nothing_when_the_flow_call_returns(
        self, tmp_path: Path
    ) -> None:
        """Ctrl-C to a program's process group: the KeyboardInterrupt propagates out of the
        flow call, and at that moment none of the runner's processes is left, the forkserver
        and resource tracker included."""
        program = LONG_FLOW + textwrap.dedent("""
            import json, psutil
            if __name__ == "__main__":
                try:
                    long()
                finally:
                    left = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)
                            if p.status() != psutil.STATUS_ZOMBIE]
                    print("left: " + json.dumps(left), flush=True)
            """)
        (tmp_path / "prog.py").write_text(program)
        job = s.Job([sys.executable, "prog.py"], tmp_path, {"CONVEYOR_RUNNER": "processes"})
        try:
            job.wait_for(lambda: len(list(tmp_path.glob("started-*"))) == 2)
            job.signal(signal.SIGINT)
            job.finish()
            out, err = job.stdout(), job.stderr()
            assert job.proc.returncode == -signal.SIGINT, out + err
            assert err.rstrip().splitlines()[-1] == "KeyboardInterrupt", err
            assert json.loads(out.split("left: ", 1)[1].splitlines()[0]) == []
            assert not job.leftovers(), s.describe(job.leftovers())
        finally:
            job.close()

    def test_a_second_ctrl_c_cuts_a_slow_stop_short(self, tmp_path: Path) -> None:
        """Ctrl-C while tasks that swallow SIGTERM run (the stop would wait 60 s of grace for
        them), then a second Ctrl-C once the runs are Cancelled: `conveyor run` exits 130 at
        once, and every process it started is gone."""
        source = SHUTDOWN_MARKED_FLOW.replace(
            "time.sleep(120)",
            "t = time.monotonic()\n    while time.monotonic() - t < 120:\n"
            "        try:\n            time.sleep(0.05)\n"
            "        except BaseException:\n            pass",
        )
        job = _conveyor_run(tmp_path, source, '{"cancel_grace_seconds": 60}')
        try:
            job.wait_for(lambda: len(list(tmp_path.glob("started-*"))) == 2)
            job.signal(signal.SIGINT)
            job.wait_for(lambda: SHUTDOWN_MARK in job.stdout())
            assert job.proc.poll() is None, "it exited before the second Ctrl-C"
            job.signal(signal.SIGINT)
            took = job.finish()
            assert job.proc.returncode == 130, job.stdout() + job.stderr()
            assert took < 15
            assert not job.leftovers(), s.describe(job.leftovers())
        finally:
            job.close()

    def test_workers_ignore_sigint(self, tmp_path: Path) -> None:
        """A SIGINT sent to a worker itself changes nothing: its run completes."""
        runs = tmp_path

        @flow(runner=ProcessesRunner(max_workers=1))
        def f() -> str:
            gate = runs / "gate"
            held = s.wait_for.submit(str(gate), BOUND)
            queued = s.wait_for.submit(str(runs / "never"), 0.0)
            for proc in s.descendants():
                if _kind(proc) == "worker":
                    os.kill(proc.pid, signal.SIGINT)
            gate.touch()
            assert held.result(timeout=BOUND) is True
            return str(queued.result(timeout=BOUND))

        assert f() == "False"


class TestUnguardedScript:
    @pytest.mark.parametrize("method", ["forkserver", "spawn"])
    def test_one_sentence_instead_of_the_bootstrapping_traceback(
        self, tmp_path: Path, method: str
    ) -> None:
        """A script that calls its flow at module level, unguarded: one sentence saying to
        guard it, and none of multiprocessing's bootstrapping tracebacks."""
        script = tmp_path / "unguarded.py"
        script.write_text(
            textwrap.dedent(f"""
            from conveyor import flow, task
            from conveyor.runners.processes import ProcessesRunner

            @task
            def one():
                return 1

            @flow(runner=ProcessesRunner(max_workers=2, start_method={method!r}))
            def main():
                return one.submit().result()

            print(main())
            """)
        )
        job = s.Job([sys.executable, str(script)], tmp_path)
        try:
            job.finish()
            err = job.stderr()
            assert job.proc.returncode == 1, err
            assert err.count('under `if __name__ == "__main__":`') == 1, err
            assert "unguarded.py starts a flow when it is imported" in err
            assert "bootstrapping" not in err and err.count("Traceback") == 1, err
            assert not job.leftovers(), s.describe(job.leftovers())
        finally:
            job.close()


class TestScale:
    def test_map_of_20000_runs(self) -> None:
        """A .map of 20,000 runs: every result right, the driver's peak RSS within the per-run
        budget."""
        check_map_scale(ProcessesRunner(max_workers=2))

    @pytest.mark.slow
    def test_soak_of_30_flows(self) -> None:
        """Thirty flows in a row: the driver keeps the same threads and no child process, and
        grows less than 20 MB from flow 10 to flow 30."""

        @flow(runner=ProcessesRunner(max_workers=2))
        def one(k: int) -> int:
            return sum(x.result(timeout=BOUND) for x in s.add.map(range(50), [k] * 50))

        me = psutil.Process()
        usage: dict[int, tuple[int, set[str], int, int]] = {}
        for k in range(30):
            assert one(k) == sum(range(50)) + 50 * k
            gc.collect()
            if k in (9, 29):
                threads = {t.name for t in threading.enumerate()}
                usage[k] = (me.memory_info().rss, threads, len(s.descendants()), me.num_fds())
        first, last = usage[9], usage[29]
        assert (last[0] - first[0]) / 2**20 < 20
        assert last[1] == first[1] and last[2] == first[2]
        assert last[3] - first[3] < 5
