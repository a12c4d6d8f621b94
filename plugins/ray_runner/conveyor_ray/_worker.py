"""
What runs on the Ray worker: conveyor's envelope, as a module-level function so that Ray
exports it by reference.
"""

from __future__ import annotations

from typing import Any


def execute_packed(payload: bytes, *deps: Any) -> tuple[Any, Any]:
    """
    Run one packed attempt; return ``(outcome, value)`` as Ray's two return objects.

    Never raises: the envelope turns everything the task does into an outcome. Ray resolves
    ``deps`` (upstream ObjectRefs) to their values on the worker before this runs.
    """
    from conveyor.runners.remote import run_packed

    return run_packed(payload, *deps)
