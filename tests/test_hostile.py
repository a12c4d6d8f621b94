"""
The hostile-task matrix on the in-process runners: whatever a task raises, returns or does to
its exception, its run ends in one documented final state within a bound, its sibling
completes, and the flow returns.
"""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import CrashReason, State, StateType, flow
from tests import _hostile as h

# What each hostile exception ends as when the task runs in this process (no pickling).
RAISED = {
    "str-raises": (StateType.FAILED, None),
    "repr-raises": (StateType.FAILED, None),
    "reduce-raises": (StateType.FAILED, None),
    "reduce-exits": (StateType.FAILED, None),
    "reduce-base-raises": (StateType.FAILED, None),
    "init-needs-two": (StateType.FAILED, None),
    "custom-base": (StateType.CRASHED, CrashReason.INTERRUPTED),
    "keyboard-interrupt": (StateType.CRASHED, CrashReason.INTERRUPTED),
    "generator-exit": (StateType.CRASHED, CrashReason.INTERRUPTED),
    "system-exit": (StateType.CRASHED, CrashReason.SYSTEM_EXIT),
    "huge-message": (StateType.FAILED, None),
    "recursion": (StateType.FAILED, None),
}

RUNNERS = ["sequential", "concurrent"]


def _run_pair(runner: str, submit: Any) -> tuple[State[Any], State[Any]]:
    @flow(runner=runner)
    def pair() -> tuple[State[Any], State[Any]]:
        bad = submit()
        good = h.ok.submit(7)
        bad_state, good_state = bad.wait(60), good.wait(60)
        assert bad_state is not None and good_state is not None, "a run never ended"
        return bad_state, good_state

    return pair()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", sorted(RAISED))
def test_hostile_exception(runner: str, is_async: bool, kind: str) -> None:
    """A task raising a hostile exception ends in its documented state; the sibling completes
    and the flow call returns."""
    body = h.raise_kind_async if is_async else h.raise_kind
    bad, good = _run_pair(runner, lambda: body.submit(kind))
    expected_type, expected_reason = RAISED[kind]
    assert (bad.type, bad.reason) == (expected_type, expected_reason), bad
    assert isinstance(bad.message, str)
    assert len(bad.message) < 20_000, "a huge message is shortened"
    assert good.result() == 7


# A value whose __del__ raises is Python's to report ("Exception ignored in ..."), not a failure.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("kind", sorted(h.RETURNERS))
def test_hostile_value_is_returned_as_is(runner: str, kind: str) -> None:
    """In this process nothing is pickled: a value that refuses to pickle is returned as is."""
    bad, good = _run_pair(runner, lambda: h.return_kind.submit(kind))
    assert bad.type is StateType.COMPLETED, bad
    assert good.result() == 7


# What each hostile exception ends as through the envelope of process-based runners (Dask,
# Ray, processes): the exception travels pickled, so pickling and unpickling can fail too.
RAISED_REMOTE = {
    **RAISED,
    "reduce-raises": (StateType.CRASHED, CrashReason.RESULT_SERIALIZATION),
    "reduce-base-raises": (StateType.CRASHED, CrashReason.RESULT_SERIALIZATION),
    "reduce-exits": (StateType.CRASHED, CrashReason.RESULT_DESERIALIZATION),
    "init-needs-two": (StateType.CRASHED, CrashReason.RESULT_DESERIALIZATION),
}
# With tblib's exception pickling installed (distributed and ray install it), an exception
# whose __init__ takes other arguments is rebuilt after all: then it arrives, FAILED.
REBUILT_BY_TBLIB = {"init-needs-two": (StateType.FAILED, None)}


def remote_outcomes(kind: str) -> set[tuple[StateType, CrashReason | None]]:
    """The documented outcomes of ``kind`` through the envelope of a process-based runner."""
    return {RAISED_REMOTE[kind], *([REBUILT_BY_TBLIB[kind]] if kind in REBUILT_BY_TBLIB else [])}


RETURNED_REMOTE = {
    "lock": (StateType.CRASHED, CrashReason.RESULT_SERIALIZATION),
    "generator": (StateType.CRASHED, CrashReason.RESULT_SERIALIZATION),
    "unpickle-bomb": (StateType.CRASHED, CrashReason.RESULT_DESERIALIZATION),
    "del-raises": (StateType.COMPLETED, None),
}


@pytest.mark.parametrize("kind", sorted(RAISED_REMOTE))
def test_hostile_exception_through_the_envelope(kind: str) -> None:
    """Packed, run as a worker runs it, and reported: each hostile exception ends in its
    documented state, never escaping, with a message that is a short string."""
    from tests.test_envelope import _round_trip

    state = _round_trip(h.raise_kind.fn, kind)
    assert (state.type, state.reason) in remote_outcomes(kind), state
    assert isinstance(state.message, str) and len(state.message) < 20_000
    if kind == "reduce-raises":
        assert "cannot be pickled on the worker" in state.message


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("kind", sorted(RETURNED_REMOTE))
def test_hostile_value_through_the_envelope(kind: str) -> None:
    """A value that refuses to pickle or unpickle is CRASHED with the serialization reason,
    naming its type; a value whose __del__ raises still completes."""
    from tests.test_envelope import _round_trip

    state = _round_trip(h.return_kind.fn, kind)
    assert (state.type, state.reason) == RETURNED_REMOTE[kind], state
