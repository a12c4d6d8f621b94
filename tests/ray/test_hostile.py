"""
The hostile-task matrix on the session's Ray cluster: whatever a task raises, returns or does to
its exception, its run ends in the state a process-based runner must give (``RAISED_REMOTE`` and
``RETURNED_REMOTE`` of tests/test_hostile.py) within a bound, and its sibling completes.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("conveyor_ray")

from conveyor import State, flow
from conveyor_ray import RayRunner
from tests import _hostile as h
from tests.test_hostile import RAISED_REMOTE, RETURNED_REMOTE, remote_outcomes

# Every run ends within this many seconds (a hang guard: most end in well under one).
BOUND = 60.0


def _run_pair(runner: RayRunner, submit: Any) -> tuple[State[Any], State[Any]]:
    """Run the hostile run and a sibling on ``runner``; return both final states."""

    @flow(runner=runner)
    def pair() -> tuple[State[Any], State[Any]]:
        bad = submit()
        good = h.ok.submit(7)
        bad_state, good_state = bad.wait(BOUND), good.wait(BOUND)
        assert bad_state is not None and good_state is not None, "a run never ended"
        return bad_state, good_state

    return pair()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", sorted(RAISED_REMOTE))
def test_hostile_exception(runner: RayRunner, is_async: bool, kind: str) -> None:
    """A task raising a hostile exception on Ray ends in the documented remote state, with a
    short string message; its sibling completes."""
    body = h.raise_kind_async if is_async else h.raise_kind
    bad, good = _run_pair(runner, lambda: body.submit(kind))
    assert (bad.type, bad.reason) in remote_outcomes(kind), (bad, bad.traceback, bad.exception())
    assert isinstance(bad.message, str) and len(bad.message) < 20_000
    assert "ray::" not in bad.message and "\x1b[" not in bad.message
    assert good.result() == 7


# A value whose __del__ raises is Python's to report ("Exception ignored in ..."), not a failure.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", sorted(RETURNED_REMOTE))
def test_hostile_value(runner: RayRunner, kind: str) -> None:
    """A task returning a value that refuses to pickle or unpickle on Ray is CRASHED with the
    serialization reason; a value whose __del__ raises completes; the sibling completes."""
    bad, good = _run_pair(runner, lambda: h.return_kind.submit(kind))
    assert (bad.type, bad.reason) == RETURNED_REMOTE[kind], bad
    assert good.result() == 7
