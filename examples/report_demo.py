"""
The flow the README's run report screenshot is made from: a fan-out of fetches with retries,
one that fails for good, one that times out, a run that never runs because its upstream
failed, and a fan-in.

    conveyor run examples/report_demo.py:report_demo --report run.html
"""

from __future__ import annotations

import random
import time

from conveyor import flow, task

_tried: set[int] = set()


@task(retries=1, retry_delay_seconds=0.05)
def fetch(i: int) -> int:
    """Fetch item ``i``: every seventh fails on its first try, item 11 always."""
    time.sleep(0.05 + random.Random(i).random() * 0.25)
    if i == 11:
        raise ConnectionError(f"item {i}: the server closed the connection")
    if i % 7 == 3 and i not in _tried:
        _tried.add(i)
        raise TimeoutError(f"item {i}: no answer in time")
    return i * i


@task(timeout_seconds=0.2)
def slow_parse(i: int) -> int:
    """A parse that runs past its timeout."""
    time.sleep(0.4)
    return i


@task
def summarise(values: list[int]) -> int:
    """Add up the fetched values."""
    time.sleep(0.1)
    return sum(values)


@task
def publish(total: int) -> str:
    """Publish the total."""
    time.sleep(0.05)
    return f"total={total}"


@flow(runner="concurrent")
def report_demo(n: int = 24) -> str:
    """Fetch ``n`` items, summarise the good ones, publish the total."""
    slow_parse.submit(0)
    futures = [fetch.submit(i) for i in range(n)]
    publish.submit(futures[11])  # never runs: fetch-12 fails for good
    good = [f for i, f in enumerate(futures) if i != 11]
    return publish.submit(summarise.submit(good)).result()
