"""Shared helpers for the tests: bounded waiting and small observer plugins."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conveyor import hookimpl

BOUND = 30.0


# The per-run budget of a finished run whose future is kept (the core issue's).
RUN_BUDGET_BYTES = 2048


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """
    Measure how far this process's peak RSS rose above its RSS at the start of the block, in
    bytes (yielded as a one-item list, filled in on exit). Linux only: it resets the kernel's
    high-water mark (``/proc/self/clear_refs``) and reads it back (``VmHWM``).
    """
    if not sys.platform.startswith("linux"):
        import pytest

        pytest.skip("peak RSS is measured through /proc (Linux)")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    start = _status_kib("VmRSS")
    growth = [0]
    yield growth
    growth[0] = (_status_kib("VmHWM") - start) * 1024


class StateRecorder:
    """An observer plugin that records task-run state changes and flow-run events."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changes: list[tuple[str, str, str]] = []
        self.flows: list[tuple[str, str]] = []

    @hookimpl
    def conveyor_task_run_state_changed(self, future: Any, old: Any, new: Any) -> None:
        with self.lock:
            self.changes.append((future.name, old.name, new.name))

    @hookimpl
    def conveyor_flow_run_started(self, flow_run: Any) -> None:
        with self.lock:
            self.flows.append((flow_run.name, "started"))

    @hookimpl
    def conveyor_flow_run_finished(self, flow_run: Any, state: Any) -> None:
        with self.lock:
            self.flows.append((flow_run.name, state.name))


def make_distribution(
    root: Any,
    dist: str,
    version: str,
    entry_points: dict[str, str],
    modules: dict[str, str],
) -> None:
    """
    Write a real installed distribution into ``root`` (a folder to put on ``sys.path``): its
    modules and a ``*.dist-info`` with METADATA and entry points in group ``conveyor``, which
    conveyor's plugin host (it reads ``*.dist-info`` folders itself) and ``importlib.metadata``
    both find like any installed one.
    """
    from pathlib import Path

    root = Path(root)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[conveyor]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (info / "RECORD").write_text("")
