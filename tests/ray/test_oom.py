"""
The Ray issue's out-of-memory case: when Ray's memory monitor kills a task's worker, the run is
CRASHED(oom-killed) within 15 s, its body ran exactly once (Ray's own retries are off), and
the other runs of the flow are unaffected.

Ray's monitor kills workers once the node's memory use (MemTotal - MemAvailable) passes
``RAY_memory_usage_threshold``, which the raylet reads when it starts. So this file starts its
own small Ray (one start for the file) with a threshold computed from the machine's usage at
that moment: the Ray processes and the flow fit under it, a task that allocates and touches
one to two more GiB crosses it.

The flow runs in a separate driver process, because one process talks to one Ray cluster (the
other Ray tests join this process to the session cluster).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.importorskip("conveyor_ray")

from conveyor.testing._tasks import count
from tests.ray._support import HeadNode, run_driver

GiB = 2**30
# Skip unless the shared machine has this much available before the test starts its Ray.
NEEDED = 8 * GiB
# The kill threshold sits this far above the machine's usage before Ray starts: the Ray head,
# the driver and the workers take about 0.3 GiB of it, the hog fills the rest (about 1.7 GiB).
HEADROOM = 2 * GiB
# The hog may grow past what it needs to cross the threshold by this much, never more.
OVERSHOOT = 1 * GiB
# Always leave the machine this much available, whatever happens.
SAFETY = 3 * GiB
# Ray kills workers until it has freed (usage - threshold) + a buffer of 5 % of the machine
# (1.2 GiB here), picking the newest tasks first. Keep the buffer smaller than the hog, so
# that freeing the hog is enough and the test shows which run the monitor picks.
KILL_BUFFER = 128 * 2**20
# The threshold must leave this much between the flow's usage and the kill when the hog starts.
MIN_MARGIN = GiB // 2
INNOCENTS = 3
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}

DRIVER = textwrap.dedent(
    """
    import json, os, time
    from pathlib import Path

    import psutil

    from conveyor import flow
    from conveyor.testing import wait_until
    from conveyor_ray import RayRunner
    from tests.ray import _tasks as rt

    CFG = json.loads(os.environ["OOM_TEST_CONFIG"])
    GiB = 2**30
    DIR = Path(CFG["dir"])
    N = CFG["innocents"]


    def used():
        vm = psutil.virtual_memory()
        return vm.total - vm.available


    def describe(state):
        if state is None:
            return None
        out = {"type": state.type.name, "name": state.name, "reason": state.reason,
               "message": state.message, "value": None}
        if state.is_completed():
            out["value"] = state.result()
        return out


    @flow(runner=RayRunner(address=CFG["address"], connect_timeout=30))
    def oom_flow():
        release = str(DIR / "release")
        innocents = [
            rt.innocent.submit(k, str(DIR / f"runs-{k}"), str(DIR / f"started-{k}"), release)
            for k in range(N)
        ]
        # The innocents hold their workers while the hog grows: Ray picks the newest task to
        # kill, so the hog is submitted once all of them run.
        started = wait_until(
            lambda: all((DIR / f"started-{k}").exists() for k in range(N)), 60, interval=0.05
        )
        report = {"innocents_started": started}
        if started:
            now = used()
            margin = CFG["limit_used"] - now
            cap = min(margin + CFG["overshoot"], psutil.virtual_memory().available - CFG["safety"])
            report.update(used_before_hog=now, margin=margin, cap=cap)
            t0 = time.monotonic()
            hog = rt.hog.submit(str(DIR / "runs-hog"), cap, 60.0)
            report["hog"] = describe(hog.wait(120))
            report["hog_seconds"] = time.monotonic() - t0
            body = DIR / "runs-hog.started"
            if body.exists():  # diagnostics: how much of it was Ray starting a worker
                report["hog_body_seconds"] = time.time() - float(body.read_text())
        Path(release).write_text("go", encoding="utf-8")
        report["innocents"] = [describe(f.wait(120)) for f in innocents]
        report["after"] = describe(rt.square.submit(7).wait(60))
        return report


    print("RESULT " + json.dumps(oom_flow()), flush=True)
    """
)


@pytest.fixture(scope="module")
def oom_head() -> Iterator[tuple[HeadNode, int]]:
    """A Ray of its own (4 CPUs, loopback) whose memory monitor kills above today's usage
    plus HEADROOM; yields it and that limit in bytes used."""
    vm = psutil.virtual_memory()
    if vm.available < NEEDED:
        pytest.skip(
            f"needs {NEEDED / GiB:.0f} GiB available, the machine has {vm.available / GiB:.1f}"
        )
    fraction = f"{(vm.total - vm.available + HEADROOM) / vm.total:.4f}"
    limit_used = int(vm.total * float(fraction))  # what the raylet computes
    env = {
        "RAY_memory_usage_threshold": fraction,
        "RAY_memory_monitor_refresh_ms": "100",
        "RAY_max_kill_memory_buffer_bytes": str(KILL_BUFFER),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)  # HeadNode passes this process's environment to `ray start`
        node = HeadNode(num_cpus=INNOCENTS + 1)
    try:
        yield node, limit_used
    finally:
        node.stop()


class TestOutOfMemory:
    def test_oom_killed_task_is_crashed_once_and_others_unaffected(
        self, oom_head: tuple[HeadNode, int], tmp_path: Path
    ) -> None:
        """A task that Ray's memory monitor kills is CRASHED(oom-killed) within 15 s of its
        submit, with a message naming the memory; its body ran once; the runs beside it complete
        with the right values, each once; and the runner still runs tasks afterwards."""
        head, limit_used = oom_head
        assert {ip for ip, _port, _name in head.listening()} <= LOOPBACK
        config = {
            "address": head.address,
            "dir": str(tmp_path),
            "limit_used": limit_used,
            "innocents": INNOCENTS,
            "overshoot": OVERSHOOT,
            "safety": SAFETY,
        }
        # A driver as users have it: Ray's default OOM retries, not the tests' 0. conveyor's
        # max_retries=0 must be what keeps the body from running again (3 would show as 4 runs).
        env = {"OOM_TEST_CONFIG": json.dumps(config), "RAY_task_oom_retries": "3"}
        result: dict[str, Any] = run_driver(DRIVER, cwd=tmp_path, timeout=240, env=env)
        assert result["returncode"] == 0, result
        assert result["innocents_started"], result
        assert result["margin"] >= MIN_MARGIN, (
            f"other work on the machine took the room the test set aside: {result}"
        )

        hog = result["hog"]
        assert hog is not None, f"the hog was not final 120 s after its submit: {result}"
        assert hog["type"] == "CRASHED" and hog["reason"] == "oom-killed", result
        assert re.search(r"out[- ]of[- ]memory|low on memory", hog["message"], re.I), hog
        assert "ray::" not in hog["message"] and "\x1b[" not in hog["message"], hog
        assert result["hog_seconds"] < 15, result
        assert count(str(tmp_path / "runs-hog")) == 1, "the OOM-killed body ran again"

        innocents = result["innocents"]
        assert [s and s["type"] for s in innocents] == ["COMPLETED"] * INNOCENTS, result
        assert [s["value"] for s in innocents] == [k * k for k in range(INNOCENTS)]
        assert [count(str(tmp_path / f"runs-{k}")) for k in range(INNOCENTS)] == [1] * INNOCENTS
        after = result["after"]
        assert after is not None and after["type"] == "COMPLETED" and after["value"] == 49, result
