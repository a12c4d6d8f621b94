"""
What runs on the Ray worker: conveyor's envelope, as a module-level function so that Ray
exports it by reference.
"""

from __future__ import annotations

from typing import Any

# Values of these types (strings and bytes up to INLINE_BYTES) come back with the outcome, so
# the driver needs no second round trip for them. Unpickling them has no side effects.
INLINE_TYPES = (type(None), bool, int, float, complex)
INLINE_BYTES = 1024


def _inline(value: Any) -> bool:
    kind = type(value)
    if kind in INLINE_TYPES:
        return True
    return kind in (str, bytes) and len(value) <= INLINE_BYTES


def execute_packed(payload: bytes, *deps: Any) -> tuple[tuple[Any, bool, Any], Any]:
    """
    Run one packed attempt; return Ray's two return objects: ``(outcome, inlined, small)`` and
    the value (None when it was small enough to travel inline).

    Never raises: the envelope turns everything the task does into an outcome. Ray resolves
    ``deps`` (upstream ObjectRefs) to their values on the worker before this runs.
    """
    from conveyor.runners.remote import run_packed

    outcome, value = run_packed(payload, *deps)
    if outcome.status == "ok" and not outcome.records:
        # The common case travels as plain values, which Ray serializes without pickle.
        if _inline(value):
            return (None, True, value), None
        return (None, False, None), value
    if outcome.status == "ok" and _inline(value):
        return (outcome, True, value), None
    return (outcome, False, None), value
