"""
A real Dask cluster across "hosts" (network namespaces on one private link): `dask scheduler`
on one, a `dask worker` on each of two others, the driver on a fourth, reached by `address`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("conveyor_dask")

from tests.multihost._drivers import DOOMED, SPARED, Driver, check_fault, lab_env, wait_for_log
from tests.multihost._netns import Lab

pytestmark = pytest.mark.multihost

PORT = 8786
#: Every process's settings, as an operator of a cluster would set them: a silent peer is
#: dropped after 15 s (Dask's default, 30 s, plus its retries, detects a cut link in 30-55 s).
COMM_ENV = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "15s"}
#: ... and no native retries on the scheduler (a run whose worker dies is conveyor's to report).
SCHEDULER_ENV = {**COMM_ENV, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """The scheduler on `sched`, workers offering `hostA` and `hostB`, the driver's host `drv`."""
    with Lab(["sched", "hostA", "hostB", "drv"], tmp_path) as lab:
        sched = lab.hosts["sched"]
        sched.popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                sched.address,
                "--port",
                str(PORT),
                "--no-dashboard",
            ],
            env=lab_env("sched", SCHEDULER_ENV),
            log=lab.log("sched"),
        )
        wait_for_log(lab, "sched", "Scheduler at:")
        for label in ("hostA", "hostB"):
            host = lab.hosts[label]
            host.popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    f"tcp://{sched.address}:{PORT}",
                    "--host",
                    host.address,
                    "--nthreads",
                    "2",
                    "--resources",
                    f"{label}=2",
                    "--name",
                    label,
                    "--no-dashboard",
                ],
                env=lab_env(label, COMM_ENV),
                log=lab.log(label),
            )
        for label in ("hostA", "hostB"):
            wait_for_log(lab, label, "Registered to:")
        yield lab
    assert lab.remains() == []


def _driver(lab: Lab, mode: str) -> Driver:
    address = f"tcp://{lab.hosts['sched'].address}:{PORT}"
    setup = (
        "from conveyor_dask import DaskRunner\n"
        f"RUNNER = DaskRunner(address={address!r}, connect_timeout=5)"
    )
    return Driver(lab, lab.hosts["drv"], setup, mode, COMM_ENV)


def _root_listeners() -> str:
    return subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout


def test_data_crosses_hosts(lab: Lab) -> None:
    """A run on hostA feeds a run on hostB by a native future; every process listens only on
    its own host's address (or loopback) in its own namespace, none in the root namespace."""
    driver = _driver(lab, "crossing")
    out = driver.result()
    driver.check_ended()
    up, down = out["up"], out["down"]
    assert (up["host"], down["host"]) == ("hostA", "hostB")
    assert up["worker"] != down["worker"]
    assert down["from"] == up["worker"] and down["sum"] == sum(range(1000))
    for host in lab.hosts.values():
        for addr, _port in host.listening():
            assert addr in {host.address, "127.0.0.1", "0.0.0.0", "*"}, (host.label, addr)
    ours = {str(p) for h in lab.hosts.values() for p in h.pids()}
    root = _root_listeners()
    assert not any(f"pid={p}," in root for p in ours), root


def test_worker_host_link_cut(lab: Lab) -> None:
    """hostA's link goes down mid-run: its runs CRASHED worker-died, hostB's complete."""
    driver = _driver(lab, "faulty")
    at = driver.fault(lab.hosts["hostA"].cut)
    check_fault(driver, at, "worker-died")


def test_worker_host_killed(lab: Lab) -> None:
    """Every process of hostA is SIGKILLed mid-run: its runs CRASHED worker-died."""
    driver = _driver(lab, "faulty")
    at = driver.fault(lab.hosts["hostA"].kill_all)
    check_fault(driver, at, "worker-died")


def test_scheduler_host_cut_off(lab: Lab) -> None:
    """The scheduler's host loses its link: every in-flight run CRASHED backend-lost, and the
    flow returns."""
    driver = _driver(lab, "faulty")
    at = driver.fault(lab.hosts["sched"].cut)
    check_fault(driver, at, "backend-lost", doomed=(*DOOMED, *SPARED))
