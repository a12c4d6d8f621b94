"""
Issues 6 and 12 on Ray: interrupts (also to the whole process group) leave nothing behind, a
flow ending early with 10,000 runs in flight, scale, and a 50-flow soak on one cluster.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("conveyor_ray")

import conveyor
from conveyor import flow
from conveyor.testing import wait_until
from conveyor_ray import RayRunner
from tests._staying_power import (
    Watched,
    backend_env,
    check_group_interrupt,
    check_map_scale,
    check_program_interrupt,
    check_program_second_interrupt,
    check_second_interrupt_stops_everything,
    check_signal_stops_everything,
    payload,
    soak,
)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_everything(tmp_path: Path, sig: int, code: int) -> None:
    """A signal mid-flow on a local Ray: exit 128+signal within 15 s, every process it started gone."""
    check_signal_stops_everything(tmp_path, "ray", sig, code)


def test_second_sigint_during_shutdown(tmp_path: Path) -> None:
    """
    A second SIGINT to `conveyor run` once its shutdown began (runs cancelled, the runner
    stopping): exit 130 at once, and every process of the runner-owned local Ray (GCS, raylet,
    workers) gone.
    """
    check_second_interrupt_stops_everything(tmp_path, "ray")


def test_sigint_to_a_program(tmp_path: Path) -> None:
    """
    `python prog.py` calling a flow on a runner-owned local Ray gets SIGINT mid-flow: the
    KeyboardInterrupt propagates within 15 s, its 4 runs are Cancelled, every process is gone.
    """
    check_program_interrupt(tmp_path, "ray", in_flight=4)


def test_second_sigint_to_a_program(tmp_path: Path) -> None:
    """
    `python prog.py` calling a flow on a runner-owned local Ray gets a second SIGINT while the flow
    shuts down after the first: it dies of it at once, and every process it started is gone.
    """
    check_program_second_interrupt(tmp_path, "ray")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigint_to_the_process_group(tmp_path: Path) -> None:
    """
    Ctrl-C as a terminal sends it, to the whole process group of `conveyor run` on a local Ray
    (its GCS, raylet and workers included), 10 times: each exits 130 within 15 s and leaves no
    process.
    """
    check_group_interrupt(tmp_path, "ray", tries=10)


# A program whose flow submits RUNS runs on a local Ray that the runner starts, all held at a
# gate until every one is submitted, opens the gate, and raises once half of them are final: the
# other half is in flight, finishing by the hundred each second while the flow cancels them. It
# prints, per final state, how many runs ended in it, and the runs that ended more than once.
EARLY_EXIT_PROGRAM = """
import json, os, sys, threading
from collections import Counter
from pathlib import Path

from conveyor import flow, hookimpl, task
from conveyor.plugins.manager import get_host
from conveyor.testing import wait_until
from conveyor_ray import RayRunner

RUNS = int(sys.argv[1])
GATE = str(Path("gate").resolve())
lock = threading.Lock()
finals = {}


class Boom(Exception):
    pass


class Recorder:
    @hookimpl
    def conveyor_task_run_state_changed(self, future, old, new):
        if new.is_final():
            with lock:
                finals.setdefault(future.name, []).append(new.name)


@task
def gated(i, gate):
    wait_until(lambda: os.path.exists(gate), 600, interval=0.01)
    return i


def final_count():
    with lock:
        return len(finals)


@flow(runner=RayRunner())
def early():
    gated.with_options(map_window=RUNS).map(range(RUNS), gate=GATE)
    Path(GATE).touch()
    wait_until(lambda: final_count() >= RUNS // 2, 600, interval=0.005)
    raise Boom(f"{final_count()} of {RUNS} runs are final")


if __name__ == "__main__":
    get_host().register(Recorder(), name="recorder")
    try:
        early()
    except Boom:
        pass
    with lock:
        ends = Counter(states[-1] for states in finals.values())
        twice = {name: states for name, states in finals.items() if len(states) != 1}
    print("RESULT " + json.dumps({"runs": len(finals), "ends": ends, "twice": twice}), flush=True)
"""


def _early_exit_once(folder: Path, runs: int) -> str | None:
    """Run EARLY_EXIT_PROGRAM once in ``folder``; what went wrong, or None."""
    folder.mkdir()
    (folder / "prog.py").write_text(EARLY_EXIT_PROGRAM)
    run = Watched([sys.executable, "prog.py", str(runs)], folder, backend_env())
    try:
        took = run.finish(limit=600)
        lines = [ln for ln in run.stdout().splitlines() if ln.startswith("RESULT ")]
        out = json.loads(lines[0][len("RESULT ") :]) if lines else None
        clean = wait_until(lambda: not run.leftovers(), 15)
        if (
            run.proc.returncode == 0
            and out is not None
            and out["runs"] == runs
            and not out["twice"]
            and set(out["ends"]) <= {"Completed", "Cancelled"}
            and out["ends"].get("Cancelled", 0) > 0
            and clean
        ):
            return None
        return (
            f"exit {run.proc.returncode} after {took:.0f} s, {out}, left "
            f"{run.describe(run.leftovers())}, stderr: {run.stderr()[-1500:]}"
        )
    finally:
        run.close()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_early_exit_with_10k_runs_in_flight(tmp_path: Path) -> None:
    """
    A flow whose body raises with about 5,000 of 10,000 runs in flight on a local Ray, 10 times,
    each in a fresh program: it exits normally (Ray's core never aborts it), every run ends in
    exactly one final state (COMPLETED or CANCELLED), and no process it started is left.
    """
    outcomes = {k: _early_exit_once(tmp_path / f"try-{k}", 10_000) for k in range(10)}
    assert {k: v for k, v in outcomes.items() if v is not None} == {}


def test_map_20k(runner: RayRunner) -> None:
    """
    A .map over 20,000 items on Ray: every run final, every result right, and the driver's
    peak memory grows by less than 2 KB per run.
    """
    check_map_scale(runner)


def test_soak_50_flows(runner: RayRunner) -> None:
    """50 flows on one Ray cluster pin no object of a finished flow and do not grow."""
    import ray

    def owned() -> int:
        counts = ray._private.worker.global_worker.core_worker.get_all_reference_counts()
        return len(counts)

    @flow(runner=runner)
    def one(k: int) -> int:
        return sum(len(b) for b in conveyor.gather(payload.map(range(20))))

    gc.collect()
    baseline = owned()
    soak(one, 20 * 4097, lambda: owned() <= baseline)
