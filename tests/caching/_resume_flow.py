"""
Flows for the resume tests: run ``x`` appends ``x`` to a marker file, and runs from ``k`` on wait
for a gate file (at most a minute), so a test can kill the flow once ``k`` runs completed.
"""

from __future__ import annotations

import os
import time

from conveyor import flow, task, unmapped


def _work(marker: str, gate: str, k: int, x: int) -> int:
    with open(marker, "a") as f:
        f.write(f"{x}\n")
    if x >= k:
        deadline = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)  # the workload: blocked until the test opens the gate
    return x


@task(cache=True)
def cached_step(marker: str, gate: str, k: int, x: int) -> int:
    return _work(marker, gate, k, x)


@task
def plain_step(marker: str, gate: str, k: int, x: int) -> int:
    return _work(marker, gate, k, x)


@flow
def cached_flow(marker: str, gate: str, k: int, n: int) -> int:
    futures = cached_step.map(unmapped(marker), unmapped(gate), unmapped(k), range(n))
    return sum(f.result() for f in futures)


@flow
def plain_flow(marker: str, gate: str, k: int, n: int) -> int:
    futures = plain_step.map(unmapped(marker), unmapped(gate), unmapped(k), range(n))
    return sum(f.result() for f in futures)
