"""
The driver side of the multi-host tests: one driver script (a flow with data crossing hosts,
and a flow with runs held in flight while the test injects a fault), run inside a host of the
lab with ``ip netns exec``, and what it reports.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor.testing import wait_until
from tests.multihost._netns import Host, Lab

#: The repository root: every process of the lab imports ``tests.multihost._tasks`` from it.
ROOT = Path(__file__).resolve().parents[2]
#: The runs the fault flow holds in flight: two on the host the fault hits, two elsewhere.
DOOMED, SPARED = ("a0", "a1"), ("b0", "b1")
#: Every bounded wait of a fault test after the fault (the issue's bound on detection).
DETECT_LIMIT = 30.0

DRIVER = textwrap.dedent(
    """
    import json, sys, time
    from conveyor import flow
    from tests.multihost import _tasks as mt
    MODE, MARKS = sys.argv[1], sys.argv[2]
    {setup}

    def on(label, t):
        return t.with_options(resources={{label: 1}})

    @flow(runner=RUNNER)
    def crossing():
        up = on("hostA", mt.produce).submit(1000)
        down = on("hostB", mt.consume).submit(up)
        return {{"up": up.result(timeout=60), "down": down.result(timeout=60)}}

    @flow(runner=RUNNER)
    def faulty():
        runs = {{n: on("hostA", mt.hold).submit(MARKS, n, 120) for n in {doomed}}}
        runs.update({{n: on("hostB", mt.hold).submit(MARKS, n, 60) for n in {spared}}})
        out = {{}}
        for name, fut in runs.items():
            st = fut.wait(90)
            out[name] = None if st is None else [st.type.value, st.reason, time.time(), st.message[:400]]
        return out

    value = crossing() if MODE == "crossing" else faulty()
    print("RESULT " + json.dumps({{"value": value, "returned": time.time()}}), flush=True)
    """
)


def lab_env(label: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process on host ``label``: the repository on the path, no Ray
    phoning home, and ``MH_HOST`` saying which host it is."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    env.update(
        {
            "MH_HOST": label,
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_AUTO_CONNECT": "0",
        }
    )
    env.pop("RAY_ADDRESS", None)
    env.update(extra or {})
    return env


def wait_for_log(lab: Lab, name: str, text: str, limit: float = 90.0) -> None:
    """Wait until the log ``name`` of the lab says ``text``; fail at once if the process of
    host ``name`` that writes it has exited."""
    path = lab.workdir / f"{name}.log"
    proc = lab.hosts[name].procs[-1]
    wait_until(
        lambda: text in path.read_text(encoding="utf-8", errors="replace")
        or proc.poll() is not None,
        limit,
        what=f"{text!r} in {name}.log\n{lab.tail()}",
        interval=0.1,
    )
    assert proc.poll() is None, f"{name}: exited with {proc.returncode}\n{lab.tail()}"


class Driver:
    """The driver script, running on ``host`` with the runner that ``setup`` builds."""

    def __init__(
        self, lab: Lab, host: Host, setup: str, mode: str, env: dict[str, str] | None = None
    ) -> None:
        self.lab = lab
        self.marks = lab.workdir / "marks"
        self.marks.mkdir(exist_ok=True)
        script = lab.workdir / "driver.py"
        script.write_text(
            DRIVER.format(setup=setup, doomed=DOOMED, spared=SPARED), encoding="utf-8"
        )
        self.proc = host.popen(
            [sys.executable, str(script), mode, str(self.marks)],
            env=lab_env(host.label, env),
            log=lab.log("driver"),
        )

    def held(self) -> None:
        """Wait until all four runs of the fault flow are running on their hosts."""
        names = (*DOOMED, *SPARED)
        wait_until(
            lambda: all((self.marks / n).exists() for n in names) or self.proc.poll() is not None,
            120,
            what=f"the four runs started\n{self.lab.tail()}",
            interval=0.05,
        )
        assert self.proc.poll() is None, self.lab.tail()

    def fault(self, inject: Callable[[], None]) -> float:
        """Inject the fault, then let the spared runs finish; returns when the fault was made."""
        self.held()
        at = time.time()
        inject()
        (self.marks / "release").write_text("", encoding="utf-8")
        return at

    def result(self, limit: float = 120.0) -> dict[str, Any]:
        """Wait for the driver to end and return what it reported."""
        rc = self.proc.wait(limit)
        text = (self.lab.workdir / "driver.log").read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            if line.startswith("RESULT "):
                return dict(json.loads(line[len("RESULT ") :]), returncode=rc)
        raise AssertionError(f"the driver reported nothing (rc={rc})\n{self.lab.tail()}")


def check_fault(out: dict[str, Any], at: float, doomed: str, spared: str | None) -> list[float]:
    """Assert the fault flow's outcome: the doomed runs CRASHED with ``doomed`` (within the
    limit), the spared ones COMPLETED (or CRASHED ``spared`` when that is given); returns the
    detection times of the doomed runs."""
    states = out["value"]
    assert out["returncode"] == 0
    assert all(states[n] is not None for n in states), states  # nothing hung
    took = []
    for name in DOOMED:
        kind, reason, when, message = states[name]
        assert (kind, reason) == ("CRASHED", doomed), (name, states[name])
        took.append(when - at)
    for name in SPARED:
        expected = ["COMPLETED", None] if spared is None else ["CRASHED", spared]
        assert states[name][:2] == expected, (name, states[name])
    assert max(took) < DETECT_LIMIT, took
    return took
