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


def execute_packed(
    payload: bytes, guards: tuple[int, ...], *refs: Any
) -> tuple[tuple[Any, bool, Any], Any]:
    """
    Run one packed attempt; return Ray's two return objects: ``(outcome, inlined, small)`` and
    the value (None when it was small enough to travel inline).

    Never raises: the envelope turns everything the task does into an outcome. Ray resolves
    the refs (upstream ObjectRefs) to their values on the worker before this runs. ``refs`` is
    the packed call's deps, then one upstream outcome per entry of ``guards`` (the index of that
    upstream's value among the deps): upstream runs submitted before they finished. If one of
    them did not end ok, the body does not run; an inlined upstream value replaces its dep.
    """
    from conveyor.runners.remote import Outcome, run_packed

    deps = list(refs[: len(refs) - len(guards)])
    for index, upstream in zip(guards, refs[len(refs) - len(guards) :], strict=True):
        up_outcome, up_inlined, up_small = upstream
        if up_outcome.status != "ok":
            skipped = Outcome(
                "crash",
                error_type="conveyor.UpstreamFailedError",
                error_message="an upstream run did not complete, so this one did not run",
                reason="upstream",
            )
            return (skipped, False, None), None
        if up_inlined:
            deps[index] = up_small
    outcome, value = run_packed(payload, *deps)
    if outcome.status == "ok" and _inline(value):
        return (outcome, True, value), None
    return (outcome, False, None), value
