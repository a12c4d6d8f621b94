"""
The envelope of remote runners, in this process and without a backend: pack a call, run it as
a worker would, and report what came back, by the one rule of conveyor.runners.outcome.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from typing import Any

import pytest

from conveyor import CrashReason, StateType
from conveyor.runners import Attempt
from conveyor.runners.remote import (
    Dep,
    pack_call,
    pack_or_crash,
    report_outcome,
    run_call,
    run_packed,
)
from conveyor.runners.remote.pickling import function_bytes
from conveyor.states import State


class Reports:
    """An attempt reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.states: list[State[Any]] = []
        self.started = 0

    def attempt_started(self, attempt: Attempt) -> None:
        self.started += 1

    def attempt_ended(self, attempt: Attempt, state: State[Any]) -> None:
        self.states.append(state)

    def is_current(self, attempt: Attempt) -> bool:
        return not self.states


def _attempt(fn: Any, *args: Any, **kwargs: Any) -> tuple[Attempt, Reports]:
    reports = Reports()
    attempt = Attempt(
        reports,
        1,
        fn,
        args,
        kwargs,
        contextvars.copy_context(),
        name="t-1",
        task_name="t",
        flow_run_name="flow-1",
        is_async=False,
    )
    return attempt, reports


def _round_trip(fn: Any, *args: Any, **kwargs: Any) -> State[Any]:
    attempt, reports = _attempt(fn, *args, **kwargs)
    payload, deps = pack_call(attempt)
    outcome, value = run_packed(payload, *deps)
    report_outcome(attempt, outcome, value)
    assert len(reports.states) == 1
    return reports.states[0]


def add(x: int, y: int) -> int:
    return x + y


async def add_async(x: int, y: int) -> int:
    return x + y


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def exit_with(code: Any) -> None:
    sys.exit(code)


def interrupt() -> None:
    raise KeyboardInterrupt


def return_lock() -> Any:
    return threading.Lock()


def return_generator() -> Any:
    return (c for c in "abc")


class Bomb:
    """Pickles, but raises when unpickled."""

    def __reduce__(self) -> Any:
        return (_explode, ())


def _explode() -> None:
    raise RuntimeError("unpickle bomb")


def return_bomb() -> Bomb:
    return Bomb()


def identity(value: Any) -> Any:
    return value


class UnpicklableError(Exception):
    """An exception whose unpickling raises."""

    def __reduce__(self) -> Any:
        return (_explode, ())


def raise_unpicklable_error() -> None:
    raise UnpicklableError("boom")


def log_and_return(value: int) -> int:
    logging.getLogger("conveyor.test.envelope").warning("worker says %d", value)
    return value


class TestOutcomes:
    def test_value_comes_back_completed(self) -> None:
        """A call that returns is COMPLETED with its value; an async function too."""
        assert _round_trip(add, 2, y=3).result() == 5
        assert _round_trip(add_async, 2, 3).result() == 5

    def test_user_exception_is_failed_with_its_type(self) -> None:
        """An Exception the function raised is FAILED, the same type and message, with the
        worker's traceback as text."""
        state = _round_trip(raise_value_error, "bad input")
        assert state.type is StateType.FAILED
        exc = state.exception()
        assert isinstance(exc, ValueError) and str(exc) == "bad input"
        assert state.traceback is not None and "raise_value_error" in state.traceback

    @pytest.mark.parametrize(("code", "shown"), [(3, "3"), ("bye", "'bye'")])
    def test_sys_exit_is_crashed_system_exit(self, code: Any, shown: str) -> None:
        """sys.exit() in a task is CRASHED system-exit, its message naming the code as the
        in-process runners name it."""
        state = _round_trip(exit_with, code)
        assert state.type is StateType.CRASHED
        assert state.reason is CrashReason.SYSTEM_EXIT
        assert state.message == f"The task called sys.exit({shown})."

    def test_keyboard_interrupt_is_crashed_interrupted(self) -> None:
        """A KeyboardInterrupt raised by the task on a worker is CRASHED interrupted."""
        state = _round_trip(interrupt)
        assert state.reason is CrashReason.INTERRUPTED
        assert "KeyboardInterrupt" in state.message

    @pytest.mark.parametrize("fn", [return_lock, return_generator], ids=["lock", "generator"])
    def test_result_that_does_not_pickle_is_result_serialization(self, fn: Any) -> None:
        """A return value that cannot be pickled is CRASHED result-serialization, naming its
        type: a generator is never mistaken for its first item."""
        state = _round_trip(fn)
        assert state.reason is CrashReason.RESULT_SERIALIZATION
        assert "cannot be pickled" in state.message

    def test_result_that_does_not_unpickle_is_result_deserialization(self) -> None:
        """A return value that pickles but cannot be unpickled is CRASHED
        result-deserialization, before the run could be reported COMPLETED."""
        state = _round_trip(return_bomb)
        assert state.reason is CrashReason.RESULT_DESERIALIZATION
        assert "Bomb" in state.message

    def test_exception_that_does_not_unpickle_here_is_result_deserialization(self) -> None:
        """An exception that cannot be unpickled on the driver is CRASHED
        result-deserialization, naming the exception's type and message."""
        state = _round_trip(raise_unpicklable_error)
        assert state.reason is CrashReason.RESULT_DESERIALIZATION
        assert "UnpicklableError: boom" in state.message

    def test_argument_that_does_not_pickle_crashes_before_running(self) -> None:
        """An argument that cannot be pickled crashes the attempt at packing
        (argument-serialization), naming its type; nothing is packed."""
        attempt, reports = _attempt(identity, threading.Lock())
        assert pack_or_crash(attempt) is None
        (state,) = reports.states
        assert state.reason is CrashReason.ARGUMENT_SERIALIZATION
        assert "_thread.lock" in state.message

    def test_argument_that_does_not_unpickle_on_the_worker(self) -> None:
        """An argument that cannot be unpickled on the worker is CRASHED
        argument-deserialization; the function never runs."""
        state = _round_trip(identity, Bomb())
        assert state.reason is CrashReason.ARGUMENT_DESERIALIZATION
        assert state.message.startswith("The task's arguments could not be unpickled")


class TestPlumbing:
    def test_native_values_travel_beside_the_payload(self) -> None:
        """Upstream values passed natively become Dep placeholders in the payload and are put
        back in place, inside containers too, on the worker."""

        from conveyor.states import ResultRef

        class NativeRef(ResultRef[int]):
            def __init__(self, handle: str) -> None:
                self.handle = handle

            def get(self) -> int:
                raise AssertionError("a native value is never fetched by the driver")

        attempt, _ = _attempt(identity, {"a": [NativeRef("h1")], "b": (NativeRef("h2"), 7)})
        payload, deps = pack_call(attempt, native=lambda ref: ref.handle)
        assert deps == ["h1", "h2"]
        outcome, value = run_packed(payload, "one", "two")
        assert outcome.status == "ok"
        assert value == {"a": ["one"], "b": ("two", 7)}
        assert Dep(0) != "one"  # placeholders are their own values

    def test_worker_log_records_reach_the_driver_with_the_run_names(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Records a task logs on the worker are shipped back and handled by the driver's
        loggers, carrying the run's names (run_call fills them in when the backend sent none)."""
        attempt, reports = _attempt(log_and_return, 4)
        outcome, value = run_call(function_bytes(log_and_return), (4,), {}, (None, None), 20)
        assert outcome.records, "the worker captured nothing"
        with caplog.at_level(logging.WARNING, logger="conveyor.test.envelope"):
            report_outcome(attempt, outcome, value)
        # In one process the record is also handled where it was made: keep the replayed one.
        (record,) = [r for r in caplog.records if getattr(r, "remote", False)]
        assert record.getMessage() == "worker says 4"
        assert (record.flow_run_name, record.task_run_name) == ("flow-1", "t-1")  # type: ignore[attr-defined]
        assert reports.states[0].result() == 4
