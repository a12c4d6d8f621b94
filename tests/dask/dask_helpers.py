"""
Task bodies and values shared by the Dask tests; importable on the workers (same sys.path).

Each body imports what it needs, and records its execution as a file ``<name>.<uuid>`` in a
folder, so tests count executions across processes.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

UNPICKLED_IN: list[int] = []


def record(folder: str | None, name: str) -> None:
    if folder:
        import uuid

        (Path(folder) / f"{name}.{uuid.uuid4().hex}").write_text(str(os.getpid()))


def _rebuild(payload: bytes) -> Tracked:
    UNPICKLED_IN.append(os.getpid())
    return Tracked(payload)


class Tracked:
    """A value that notes every process that unpickles it (in ``UNPICKLED_IN`` there)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __reduce__(self) -> Any:
        return (_rebuild, (self.payload,))


def _explode() -> Any:
    raise RuntimeError("unpickle bomb")


class UnpickleBomb:
    """Pickles fine, raises RuntimeError when unpickled."""

    def __reduce__(self) -> Any:
        return (_explode, ())


def make_lock() -> Any:
    return threading.Lock()


def roundtrip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            import pytest

            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def count_runs(folder: Path, name: str) -> int:
    """How many times a body that records ``name`` ran."""
    return len(list(folder.glob(f"{name}.*")))
