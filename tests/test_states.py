"""States are immutable values with honest predicates and results."""

from __future__ import annotations

import attrs
import pytest

from conveyor import CancelledRun, ConveyorError, CrashedRun, StateType, TimedOutRun
from conveyor.states import (
    Cancelled,
    Completed,
    Crashed,
    Failed,
    NotRun,
    Pending,
    ResultRef,
    Retrying,
    Running,
    TimedOut,
)


class TestState:
    def test_is_immutable(self) -> None:
        """A state cannot be changed after it is made."""
        state = Completed(1)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            state.type = StateType.FAILED  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("state", "final", "predicate"),
        [
            (Pending(), False, "is_pending"),
            (Retrying("again"), False, "is_pending"),
            (Running(), False, "is_running"),
            (Completed(1), True, "is_completed"),
            (Failed(ValueError("x")), True, "is_failed"),
            (TimedOut("late", stopped=False), True, "is_failed"),
            (NotRun("upstream"), True, "is_failed"),
            (Crashed("died", reason="worker-died"), True, "is_crashed"),
            (Cancelled("stop"), True, "is_cancelled"),
        ],
    )
    def test_predicates(self, state: object, final: bool, predicate: str) -> None:
        """Each state answers its own predicate and says whether it is final."""
        assert getattr(state, predicate)()
        assert state.is_final() is final  # type: ignore[attr-defined]
        others = {
            "is_pending",
            "is_running",
            "is_completed",
            "is_failed",
            "is_crashed",
            "is_cancelled",
        }
        assert not any(getattr(state, p)() for p in others - {predicate})

    def test_named_states(self) -> None:
        """Named states refine their types."""
        assert Retrying().name == "Retrying" and Retrying().type is StateType.PENDING
        timed_out = TimedOut("late", stopped=True)
        assert (timed_out.name, timed_out.type, timed_out.reason) == (
            "TimedOut",
            StateType.FAILED,
            "stopped",
        )

    def test_completed_result(self) -> None:
        """A completed state returns its data."""
        assert Completed({"a": 1}).result() == {"a": 1}

    def test_failed_result_raises_the_task_exception(self) -> None:
        """A failed state raises the task's own exception, or returns it on request."""
        exc = KeyError("k")
        state = Failed(exc)
        with pytest.raises(KeyError):
            state.result()
        assert state.result(raise_on_failure=False) is exc
        assert state.message == "KeyError: 'k'"

    @pytest.mark.parametrize(
        ("state", "error"),
        [
            (Crashed("worker died", reason="worker-died"), CrashedRun),
            (Cancelled("stop"), CancelledRun),
            (TimedOut("late", stopped=False), TimedOutRun),
        ],
    )
    def test_other_final_results_raise(self, state: object, error: type[Exception]) -> None:
        """Crashed, cancelled and timed-out states raise conveyor's errors."""
        with pytest.raises(error):
            state.result()  # type: ignore[attr-defined]

    def test_crash_reason_and_cause(self) -> None:
        """A crash carries its reason, and the infrastructure error as the cause."""
        cause = OSError("connection lost")
        state = Crashed("lost", reason="backend-lost", exc=cause)
        exc = state.result(raise_on_failure=False)
        assert isinstance(exc, CrashedRun)
        assert exc.reason == "backend-lost"
        assert exc.__cause__ is cause

    def test_timed_out_is_a_timeout_error(self) -> None:
        """TimedOut raises an error that is also a TimeoutError."""
        with pytest.raises(TimeoutError):
            TimedOut("late", stopped=False).result()

    def test_non_final_result_raises(self) -> None:
        """Asking a state that is not final for its result is an error."""
        with pytest.raises(ConveyorError, match="no result yet"):
            Running().result()

    def test_result_ref_is_fetched_on_demand(self) -> None:
        """A completed state whose data lives elsewhere fetches it only when asked."""
        fetched = []

        class Ref(ResultRef[int]):
            def get(self) -> int:
                fetched.append(1)
                return 7

        state = Completed(Ref())
        assert fetched == []
        assert state.result() == 7
        assert fetched == [1]

    def test_equality_ignores_timestamps(self) -> None:
        """Two states of the same kind and message compare equal."""
        assert Pending() == Pending()
        assert repr(Completed(1)) == "<State Completed (COMPLETED)>"
