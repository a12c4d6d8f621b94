"""Futures: waiting without polling, callbacks, wait/as_completed, await, first final wins."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import pytest

import conveyor
from conveyor import RunFuture, flow, task
from conveyor.runners import ConcurrentRunner

gate = threading.Event()


@task
def blocked(x: int) -> int:
    gate.wait(30)
    return x


@task
def quick(x: int) -> int:
    return x


@task
def boom() -> None:
    raise ValueError("boom")


@pytest.fixture(autouse=True)
def _release_gate() -> Any:
    gate.clear()
    yield
    gate.set()


class TestWaiting:
    def test_wait_returns_none_on_timeout_and_never_raises(self) -> None:
        """wait() returns None when the run is not final in time, then the final state."""

        @flow(runner="concurrent")
        def f() -> tuple[object, object]:
            fut = blocked.submit(1)
            first = fut.wait(0.05)
            gate.set()
            return first, fut.wait(10)

        first, final = f()
        assert first is None
        assert final.is_completed()  # type: ignore[attr-defined]

    def test_result_timeout_raises_timeout_error(self) -> None:
        """result(timeout=...) raises TimeoutError when the run is not final in time."""

        @flow(runner="concurrent")
        def f() -> str:
            fut = blocked.submit(1)
            with pytest.raises(TimeoutError, match="did not finish within"):
                fut.result(timeout=0.05)
            gate.set()
            return "ok"

        assert f() == "ok"

    def test_result_raise_on_failure_false(self) -> None:
        """result(raise_on_failure=False) returns the exception instead of raising it."""

        @flow(runner="concurrent")
        def f() -> object:
            return boom.submit().result(raise_on_failure=False)

        exc = f()
        assert isinstance(exc, ValueError) and str(exc) == "boom"

    def test_waiting_does_not_spin(self) -> None:
        """A thread waiting on a future uses (almost) no CPU: it blocks on an event."""

        @flow(runner="concurrent")
        def f() -> float:
            fut = blocked.submit(1)
            threading.Timer(1.0, gate.set).start()
            start = time.thread_time()
            fut.result(timeout=10)
            return time.thread_time() - start

        assert f() < 0.2  # a busy-wait would burn the full second

    def test_done_callbacks_run_once_and_late_callbacks_at_once(self) -> None:
        """add_done_callback fires once when final, and at once for a final future."""
        calls: list[str] = []

        @flow(runner="concurrent")
        def f() -> None:
            fut = blocked.submit(1)
            fut.add_done_callback(lambda x: calls.append("early"))
            gate.set()
            fut.wait(10)
            fut.add_done_callback(lambda x: calls.append("late"))

        f()
        assert calls == ["early", "late"]

    def test_callback_errors_are_contained(self, caplog: pytest.LogCaptureFixture) -> None:
        """A callback that raises is logged and does not break the run."""

        def bad(_f: RunFuture[int]) -> None:
            raise RuntimeError("callback broke")

        @flow(runner="concurrent")
        def f() -> int:
            fut = quick.submit(3)
            fut.add_done_callback(bad)
            return fut.result()

        assert f() == 3


class TestWaitAndAsCompleted:
    def test_wait_all_and_first_completed(self) -> None:
        """conveyor.wait behaves like concurrent.futures.wait."""

        @flow(runner="concurrent")
        def f() -> tuple[int, int, int, int]:
            slow = blocked.submit(1)
            fast = quick.submit(2)
            done, not_done = conveyor.wait([slow, fast], return_when=conveyor.FIRST_COMPLETED)
            first = (len(done), len(not_done))
            done2, not_done2 = conveyor.wait([slow, fast], timeout=0.05)
            gate.set()
            done3, _ = conveyor.wait([slow, fast], timeout=10)
            assert done3 == {slow, fast}
            return first[0], first[1], len(done2), len(not_done2)

        assert f() == (1, 1, 1, 1)

    def test_wait_first_exception(self) -> None:
        """FIRST_EXCEPTION returns as soon as one run did not complete."""

        @flow(runner="concurrent")
        def f() -> bool:
            slow = blocked.submit(1)
            bad = boom.submit()
            done, not_done = conveyor.wait(
                [slow, bad], return_when=conveyor.FIRST_EXCEPTION, timeout=10
            )
            gate.set()
            return bad in done and slow in not_done

        assert f()

    def test_as_completed_yields_in_completion_order(self) -> None:
        """as_completed yields finished futures first, then the others as they finish."""

        @flow(runner="concurrent")
        def f() -> list[int]:
            slow = blocked.submit(1)
            fast = quick.submit(2)
            fast.wait(10)
            order = []
            for i, fut in enumerate(conveyor.as_completed([slow, fast], timeout=10)):
                order.append(fut.result())
                if i == 0:
                    gate.set()
            return order

        assert f() == [2, 1]

    def test_as_completed_timeout(self) -> None:
        """as_completed raises TimeoutError when runs are still not final."""

        @flow(runner="concurrent")
        def f() -> None:
            slow = blocked.submit(1)
            with pytest.raises(TimeoutError):
                list(conveyor.as_completed([slow], timeout=0.05))
            gate.set()

        f()

    def test_same_contract_as_the_standard_library(self) -> None:
        """conveyor.wait has the signature and constants of concurrent.futures.wait."""
        assert conveyor.FIRST_COMPLETED == concurrent.futures.FIRST_COMPLETED
        assert conveyor.FIRST_EXCEPTION == concurrent.futures.FIRST_EXCEPTION
        assert conveyor.ALL_COMPLETED == concurrent.futures.ALL_COMPLETED
        with pytest.raises(ValueError, match="return_when"):
            conveyor.wait([], return_when="SOMETIMES")


class TestAwait:
    def test_futures_are_awaitable(self) -> None:
        """A future can be awaited inside an async flow, without blocking the loop."""

        @flow(runner="concurrent")
        async def f() -> list[int]:
            futs = [blocked.submit(1), quick.submit(2)]
            asyncio.get_running_loop().call_later(0.05, gate.set)
            return [await fut for fut in futs]

        assert asyncio.run(f()) == [1, 2]


class TestFirstFinalStateWins:
    def test_late_result_does_not_overwrite_timed_out(self) -> None:
        """A run marked TimedOut stays TimedOut when its work finishes later."""
        slow = blocked.with_options(timeout_seconds=0.1)

        @flow(runner=ConcurrentRunner(max_workers=2))
        def f() -> list[str]:
            fut = slow.submit(1)
            states = [fut.wait(10).name]  # type: ignore[union-attr]
            gate.set()
            quick.submit(0).result()  # the slow work finishes meanwhile
            states.append(fut.state.name)
            return states

        assert f() == ["TimedOut", "TimedOut"]

    def test_late_result_does_not_overwrite_cancelled(self) -> None:
        """A run cancelled while running stays Cancelled when its work finishes later."""
        started = threading.Event()

        @task
        def running() -> int:
            started.set()
            gate.wait(30)
            return 1

        @flow(runner="concurrent")
        def f() -> tuple[bool, str, str]:
            fut = running.submit()
            assert started.wait(10)
            ok = fut.cancel()
            name = fut.state.name
            gate.set()
            quick.submit(0).result()
            return ok, name, fut.state.name

        ok, before, after = f()
        assert ok is True
        assert before == after == "Cancelled"

    def test_cancel_on_final_future_is_false(self) -> None:
        """Cancelling a run that is already final does nothing and returns False."""

        @flow(runner="concurrent")
        def f() -> tuple[bool, str]:
            fut = quick.submit(1)
            fut.wait(10)
            return fut.cancel(), fut.state.name

        assert f() == (False, "Completed")


class TestGather:
    def test_gather_returns_values_in_order(self) -> None:
        """gather() waits for every future and returns the values in submission order."""

        @flow(runner="concurrent")
        def f() -> list[int]:
            return conveyor.gather(quick.map(range(20)), timeout=30)

        assert f() == list(range(20))

    def test_gather_raises_the_first_failure(self) -> None:
        """gather() raises the first failed run's exception, or returns it in place."""

        @flow(runner="concurrent")
        def f() -> list[object]:
            futures = [quick.submit(1), boom.submit(), quick.submit(2)]
            with pytest.raises(ValueError, match="boom"):
                conveyor.gather(futures, timeout=30)
            return conveyor.gather(futures, timeout=30, raise_on_failure=False)

        values = f()
        assert values[0] == 1 and values[2] == 2 and isinstance(values[1], ValueError)

    def test_gather_timeout(self) -> None:
        """gather() raises TimeoutError when a run is not final in time."""

        @flow(runner="concurrent")
        def f() -> None:
            fut = blocked.submit(1)
            with pytest.raises(TimeoutError):
                conveyor.gather([fut], timeout=0.05)
            gate.set()

        f()

    def test_gather_fetches_result_refs_in_one_batch(self) -> None:
        """Values held elsewhere are fetched with one get_many call per ResultRef class."""
        from conveyor.states import Completed, ResultRef

        calls: list[int] = []

        class Ref(ResultRef[int]):
            def __init__(self, v: int) -> None:
                self.v = v

            def get(self) -> int:
                raise AssertionError("fetched one by one")

            @classmethod
            def get_many(cls, refs: list[ResultRef[int]]) -> list[int | BaseException]:
                calls.append(len(refs))
                return [r.v for r in refs]  # type: ignore[attr-defined]

        futures = [RunFuture(str(i), f"r-{i}", Completed(Ref(i)), None) for i in range(5)]
        assert conveyor.gather(futures) == [0, 1, 2, 3, 4]
        assert calls == [5]
