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
#: The bound on detecting a fault (the issue's); the driver waits a little longer for the runs.
DETECT_LIMIT = 30.0
#: How long the driver may take to end once it has reported.
EXIT_LIMIT = 15.0

DRIVER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from conveyor import flow
    from conveyor.testing import wait_until
    from tests.multihost import _tasks as mt
    import logging; logging.basicConfig(level=logging.INFO)  # the log explains a failing test
    MODE, MARKS = sys.argv[1], sys.argv[2]
    {setup}

    def on(label, t):
        return t.with_options(resources={{label: 1}})

    @flow(runner=RUNNER)
    def crossing():
        up = on("hostA", mt.produce).submit(1000)
        down = on("hostB", mt.consume).submit(up)
        out = {{"up": up.result(timeout=60), "down": down.result(timeout=60)}}
        print("STATES " + json.dumps(out), flush=True)
        return out

    @flow(runner=RUNNER)
    def faulty():
        runs = {{n: on("hostA", mt.hold).submit(MARKS, n, 120) for n in {doomed}}}
        runs.update({{n: on("hostB", mt.hold).submit(MARKS, n, 60) for n in {spared}}})
        wait_until(lambda: (Path(MARKS) / "release").exists(), 120, interval=0.05)
        deadline = time.monotonic() + {limit}  # a run not final by then is reported hung
        out = {{}}
        for name, fut in runs.items():
            st = fut.wait(max(0.0, deadline - time.monotonic()))
            out[name] = None if st is None else [st.type.value, st.reason, time.time(), st.message[:400]]
        print("STATES " + json.dumps(out), flush=True)  # before the runner stops
        return out

    value = crossing() if MODE == "crossing" else faulty()
    print("RETURNED", flush=True)
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
        lambda: (
            text in path.read_text(encoding="utf-8", errors="replace") or proc.poll() is not None
        ),
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
            DRIVER.format(setup=setup, doomed=DOOMED, spared=SPARED, limit=DETECT_LIMIT + 5),
            encoding="utf-8",
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

    def _line(self, prefix: str) -> str | None:
        text = (self.lab.workdir / "driver.log").read_text(encoding="utf-8", errors="replace")
        found = [ln for ln in text.splitlines() if ln.startswith(prefix)]
        return found[0] if found else None

    def result(self, limit: float = DETECT_LIMIT + 25) -> dict[str, Any]:
        """Wait (up to ``limit`` s) for the states the flow reports, and return them."""
        line = wait_until(
            lambda: self._line("STATES ") or self.proc.poll() is not None, limit, interval=0.1
        ) and self._line("STATES ")
        if not line:
            raise AssertionError(f"the flow reported nothing in {limit} s\n{self.lab.tail()}")
        return dict(json.loads(line[len("STATES ") :]))

    def check_ended(self) -> None:
        """Assert that the flow then returned, and the driver ended, each within :data:`EXIT_LIMIT`."""
        returned = wait_until(lambda: self._line("RETURNED"), EXIT_LIMIT, interval=0.1)
        assert returned, f"the flow did not return within {EXIT_LIMIT} s\n{self.lab.tail()}"
        exited = wait_until(lambda: self.proc.poll() is not None, EXIT_LIMIT, interval=0.1)
        assert exited and self.proc.returncode == 0, f"the driver did not end\n{self.lab.tail()}"


def check_fault(
    driver: Driver,
    at: float,
    reason: str,
    doomed: tuple[str, ...] = DOOMED,
    others: tuple[tuple[str, str | None], ...] = (("COMPLETED", None),),
) -> list[float]:
    """Assert the fault flow's outcome: the ``doomed`` runs CRASHED with ``reason`` within
    :data:`DETECT_LIMIT`, every other run in one of the states ``others``, the driver ended;
    returns the detection times."""
    states = driver.result()
    hung = [n for n, st in states.items() if st is None]
    assert not hung, f"not final {DETECT_LIMIT + 5} s after the fault: {hung}; {states}"
    took = []
    for name in doomed:
        kind, why, when, _message = states[name]
        assert (kind, why) == ("CRASHED", reason), (name, states[name])
        took.append(round(when - at, 1))
    for name in set(states) - set(doomed):
        assert tuple(states[name][:2]) in others, (name, states[name])
    assert max(took) < DETECT_LIMIT, took
    driver.check_ended()
    print(f"detected in {took} s")
    return took
