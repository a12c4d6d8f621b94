"""
The runner's default cluster, ``LocalProcessCluster``: a LocalCluster whose scheduler runs in a
process of its own. Its scheduler is out of the driver, gets the driver's Dask configuration,
survives a Ctrl-C to the process group, ends with the cluster or with the driver, and a scheduler
that cannot start is a clear error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.importorskip("conveyor_dask")

from conveyor import BackendUnavailable, flow, task
from conveyor.testing import wait_until
from conveyor_dask import DaskRunner
from tests._staying_power import alive


def _scheduler_pid(client: Any) -> int:
    return int(client.run_on_scheduler(lambda dask_scheduler: os.getpid()))


def test_the_scheduler_runs_in_a_child_process(cluster: Any) -> None:
    """The scheduler is a child process of the driver, with the driver's Dask configuration."""
    import dask
    from distributed import Client

    with Client(cluster, set_as_default=False) as client:
        pid = _scheduler_pid(client)
        assert pid != os.getpid()
        assert pid == cluster.scheduler.pid
        assert psutil.Process(pid).ppid() == os.getpid()
        # The fixture set allowed-failures=0 in this process's Dask config; the scheduler has it.
        allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
        assert allowed == 0 != dask.config.get("distributed.scheduler.allowed-failures")


def test_a_ctrl_c_to_the_process_group_leaves_the_scheduler_running(cluster: Any) -> None:
    """SIGINT (what a terminal's Ctrl-C sends every process of the group) does not stop it."""
    from distributed import Client

    with Client(cluster, set_as_default=False) as client:
        pid = _scheduler_pid(client)
        os.kill(pid, signal.SIGINT)
        assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        assert _scheduler_pid(client) == pid


@task
def where() -> int:
    return os.getpid()


def test_the_default_runner_starts_and_stops_it() -> None:
    """DaskRunner() starts its scheduler in a child process and, stopping, leaves no process."""
    runner = DaskRunner(cluster_kwargs={"n_workers": 1})
    seen: dict[str, set[int]] = {}
    before = {c.pid for c in psutil.Process().children()}  # the module's cluster, if started

    @flow(runner=runner)
    def probe() -> int:
        seen["schedulers"] = _children_running("conveyor_dask.cluster") - before
        seen["all"] = {c.pid for c in psutil.Process().children()} - before
        return where.submit().result()

    worker_pid = probe()
    assert len(seen["schedulers"]) == 1, seen
    assert worker_pid in seen["all"] - seen["schedulers"]  # the task ran in a worker process
    assert wait_until(lambda: not alive(seen["all"]), 15), alive(seen["all"])


def _children_running(text: str) -> set[int]:
    found = set()
    for child in psutil.Process().children():
        try:
            if text in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def test_a_scheduler_that_cannot_start_is_a_clear_error() -> None:
    """A bad scheduler option: BackendUnavailable naming the cluster, and no process left."""
    before = {c.pid for c in psutil.Process().children()}
    runner = DaskRunner(cluster_kwargs={"n_workers": 1, "scheduler_kwargs": {"no_such": 1}})

    @flow(runner=runner)
    def never() -> None:
        raise AssertionError("the flow body ran without a cluster")

    with pytest.raises(BackendUnavailable, match="could not start LocalProcessCluster") as info:
        never()
    assert "scheduler process exited with code 1" in str(info.value)
    assert wait_until(lambda: not alive({c.pid for c in psutil.Process().children()} - before))


DRIVER = """
import json, os, sys, psutil
from conveyor_dask.cluster import LocalProcessCluster

if __name__ == "__main__":
    cluster = LocalProcessCluster(n_workers=1, threads_per_worker=1, dashboard_address=None)
    pids = [c.pid for c in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(c.cmdline())]
    print(json.dumps({"scheduler": cluster.scheduler.pid, "all": pids}), flush=True)
    sys.stdin.read()  # until the test kills this process
"""


def test_the_scheduler_ends_when_the_driver_dies(tmp_path: Path) -> None:
    """SIGKILL to the driver (no cleanup runs): its scheduler and worker processes end too."""
    (tmp_path / "driver.py").write_text(DRIVER)
    with subprocess.Popen(
        [sys.executable, "driver.py"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, "the driver printed nothing"
            pids = json.loads(line)
            assert pids["scheduler"] in pids["all"] and len(pids["all"]) >= 2, pids
        finally:
            proc.kill()
            proc.wait(timeout=30)
    assert wait_until(lambda: not alive(set(pids["all"])), 15), alive(set(pids["all"]))


def _small_cluster(**kwargs: Any) -> Any:
    from conveyor_dask.cluster import LocalProcessCluster

    options = {"n_workers": 1, "threads_per_worker": 1, "host": "127.0.0.1"}
    options["dashboard_address"] = None
    return LocalProcessCluster(**{**options, **kwargs})


def test_closing_the_cluster_ends_the_scheduler_cleanly() -> None:
    """A normal close: the scheduler process exits 0 (no crash of its interpreter on the way)."""
    cluster = _small_cluster()
    process = cluster.scheduler
    assert process.alive
    cluster.close(timeout=30)
    assert process.returncode == 0
    assert not process.alive


def test_threaded_workers_reach_the_scheduler_process() -> None:
    """processes=False: workers are threads here, the scheduler still a process (over TCP)."""
    from distributed import Client

    cluster = _small_cluster(processes=False)
    try:
        with Client(cluster, set_as_default=False) as client:
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
            assert _scheduler_pid(client) == cluster.scheduler.pid != os.getpid()
    finally:
        cluster.close(timeout=30)


def test_config_that_does_not_pickle_stays_behind() -> None:
    """
    A thread pool set in the Dask config cannot travel: the scheduler starts without it.
    (Threaded workers: a nanny would refuse that config for its worker processes, as it does
    with LocalCluster.)
    """
    from concurrent.futures import ThreadPoolExecutor

    import dask

    with ThreadPoolExecutor(1) as pool, dask.config.set(pool=pool, **{"conveyor-test": 7}):
        cluster = _small_cluster(processes=False)
    try:
        from distributed import Client

        with Client(cluster, set_as_default=False) as client:
            seen = client.run_on_scheduler(
                lambda dask_scheduler: (
                    dask.config.get("conveyor-test"),
                    dask.config.get("pool", None),
                )
            )
        assert seen == (7, None)
    finally:
        cluster.close(timeout=30)


def test_a_scheduler_that_died_does_not_hold_up_the_close() -> None:
    """Its scheduler process killed, the cluster still closes, and its workers end."""
    cluster = _small_cluster()
    pid = cluster.scheduler.pid
    workers = {w.pid for w in cluster.workers.values()}
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not cluster.scheduler.alive, 15)
    assert cluster.scheduler.pid is None  # never a PID that may belong to another process now
    cluster.close(timeout=30)
    assert wait_until(lambda: not alive(workers), 15), alive(workers)
