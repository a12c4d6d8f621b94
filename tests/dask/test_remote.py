"""A real `dask scheduler` and `dask worker` processes, reached by `address` from pyproject.toml."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("conveyor_dask")

from conveyor import BackendUnavailable, StateType, flow, task
from conveyor.testing import wait_until
from conveyor_dask import DaskRunner

#: The repository root: the workers import the tasks of this module as ``tests.dask.test_remote``.
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


@pytest.fixture
def remote_cluster(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A scheduler and two 1-thread workers as separate processes on 127.0.0.1."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "0"
    dask = [sys.executable, "-m", "distributed.cli"]
    log = (tmp_path / "cluster.log").open("wb")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--dashboard-address",
                    "127.0.0.1:0",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "distributed.cli.dask_worker",
                        address,
                        "--nthreads",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--dashboard-address",
                        "127.0.0.1:0",
                        "--no-dashboard",
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        from distributed import Client

        with Client(address, timeout=30, set_as_default=False) as c:
            c.wait_for_workers(2, timeout=60)
        del dask
        yield address, procs[0]
    finally:
        for proc in reversed(procs):
            _stop(proc)
        log.close()


@task
def where() -> int:
    import os

    return os.getpid()


@task
def slow(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "slow"


def _configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.conveyor]\nrunner = "dask"\n\n'
        f'[tool.conveyor.runners.dask]\naddress = "{address}"\nconnect_timeout = 5\n'
    )
    monkeypatch.chdir(tmp_path)


class TestRemoteCluster:
    def test_flow_reaches_the_cluster_by_address_from_pyproject(
        self, remote_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A flow with no runner in code runs on the scheduler named in pyproject.toml, which stays up after."""
        address, scheduler = remote_cluster
        _configure(tmp_path, monkeypatch, address)

        @flow
        def f() -> set[int]:
            return {x.result(timeout=60) for x in [where.submit() for _ in range(6)]}

        pids = f()
        assert pids and os.getpid() not in pids
        assert scheduler.poll() is None  # the runner shut down only what it started
        again = f()
        assert again

    def test_losing_the_scheduler_crashes_inflight_runs(
        self, remote_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Killing the scheduler mid-flow makes every in-flight run CRASHED (backend-lost) within 30 s."""
        address, scheduler = remote_cluster
        _configure(tmp_path, monkeypatch, address)

        @flow
        def f() -> Any:
            futs = [slow.submit(5) for _ in range(4)]
            wait_until(lambda: any(x.running() for x in futs) or True, 5, what="runs to start")
            t0 = time.monotonic()
            scheduler.kill()
            states = [x.wait(30) for x in futs]
            return states, time.monotonic() - t0

        states, elapsed = f(return_state=True).result()
        assert all(s is not None for s in states)
        assert elapsed < 30
        for s in states:
            assert s.type is StateType.CRASHED and s.reason == "backend-lost", s


class TestUnreachable:
    def test_unreachable_address_is_backend_unavailable_within_the_timeout(self) -> None:
        """Connecting to a closed port raises BackendUnavailable within connect_timeout + 2 s."""
        runner = DaskRunner(address=f"tcp://127.0.0.1:{_free_port()}", connect_timeout=3)
        t0 = time.monotonic()
        with pytest.raises(BackendUnavailable, match="could not reach the Dask scheduler"):
            runner.start()
        assert time.monotonic() - t0 < 3 + 2
        assert not runner.started
