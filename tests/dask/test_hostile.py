"""
The hostile-task matrix on a Dask cluster: whatever a task raises or returns, its run ends in
the state the envelope documents (tests/test_hostile.py), its sibling completes, and the flow
returns.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("conveyor_dask")

from conveyor import State, flow
from conveyor_dask import DaskRunner
from tests import _hostile as h
from tests.test_hostile import RAISED_REMOTE, RETURNED_REMOTE, remote_outcomes


def _run_pair(runner: DaskRunner, submit: Any) -> tuple[State[Any], Any]:
    """The final state of the run ``submit`` starts, and the value of a sibling (read in the flow)."""

    @flow(runner=runner)
    def pair() -> tuple[State[Any], Any]:
        bad = submit()
        good = h.ok.submit(7)
        bad_state, good_state = bad.wait(60), good.wait(60)
        assert bad_state is not None and good_state is not None, "a run never ended"
        return bad_state, good_state.result()

    return pair()


@pytest.fixture
def runner(cluster: Any) -> DaskRunner:
    return DaskRunner(address=cluster.scheduler_address, connect_timeout=10)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", sorted(RAISED_REMOTE))
def test_hostile_exception_on_dask(runner: DaskRunner, is_async: bool, kind: str) -> None:
    """A Dask task raising a hostile exception ends in its documented state; its sibling completes."""
    body = h.raise_kind_async if is_async else h.raise_kind
    bad, good = _run_pair(runner, lambda: body.submit(kind))
    assert (bad.type, bad.reason) in remote_outcomes(kind), bad
    assert isinstance(bad.message, str) and len(bad.message) < 20_000
    assert good == 7


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", sorted(RETURNED_REMOTE))
def test_hostile_value_on_dask(runner: DaskRunner, kind: str) -> None:
    """A Dask task returning a hostile value ends in its documented state; its sibling completes."""
    bad, good = _run_pair(runner, lambda: h.return_kind.submit(kind))
    assert (bad.type, bad.reason) == RETURNED_REMOTE[kind], bad
    assert good == 7
