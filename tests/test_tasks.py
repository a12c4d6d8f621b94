"""Tasks: inline calls, submit, map, options, retries, bad input, pickling."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

from conveyor import ConfigError, NoFlowRunError, Task, flow, task, unmapped
from conveyor.testing import _tasks as shared


@task
def add(x: int, y: int = 0) -> int:
    return x + y


@task
async def async_double(x: int) -> int:
    return 2 * x


class TestCalling:
    def test_outside_a_flow_calls_the_function(self) -> None:
        """Outside a flow, calling a task calls the function."""
        assert add(1, 2) == 3

    def test_inline_inside_a_flow_returns_the_value(self) -> None:
        """Inside a flow, calling a task runs it inline and returns its value."""

        @flow(runner="concurrent")
        def f() -> int:
            return add(1, 2) + add(3)

        assert f() == 6

    def test_inline_failure_raises_in_the_body(self) -> None:
        """An inline call that fails raises the task's exception in the flow body."""

        @flow(runner="sequential")
        def f() -> str:
            try:
                shared.fail("inline")
            except ValueError as exc:
                return str(exc)
            return "no error"

        assert f() == "inline"

    def test_async_task_inline_in_sync_flow(self) -> None:
        """An async task called inline from a sync flow returns its value."""

        @flow(runner="sequential")
        def f() -> int:
            return async_double(4)

        assert f() == 8

    def test_submit_outside_a_flow_raises(self) -> None:
        """submit() outside a flow raises an error that names the fix."""
        with pytest.raises(NoFlowRunError, match=r"inside a function decorated with @flow"):
            add.submit(1)
        with pytest.raises(NoFlowRunError):
            add.map([1, 2])


class TestMap:
    def test_map_with_unmapped_and_static_arguments(self) -> None:
        """map() submits one run per element; unmapped and non-iterables pass whole."""

        @flow(runner="concurrent")
        def f() -> list[int]:
            return [fut.result() for fut in add.map([1, 2, 3], y=unmapped(10))]

        assert f() == [11, 12, 13]

    def test_map_passes_a_list_whole_with_unmapped(self) -> None:
        """unmapped() passes a list whole to every run."""

        @task
        def size(items: list[int], k: int) -> int:
            return len(items) * k

        @flow(runner="concurrent")
        def f() -> list[int]:
            return [fut.result() for fut in size.map(unmapped([1, 2]), [1, 2, 3])]

        assert f() == [2, 4, 6]

    def test_map_lengths_must_match(self) -> None:
        """Iterables of different lengths are refused, naming the lengths."""

        @flow(runner="concurrent")
        def f() -> None:
            add.map([1, 2], [1, 2, 3])

        with pytest.raises(ConfigError, match="different lengths"):
            f()

    def test_map_over_futures(self) -> None:
        """map() takes a list of futures as its iterable."""

        @flow(runner="concurrent")
        def f() -> list[int]:
            firsts = add.map([1, 2])
            return [fut.result() for fut in add.map(firsts, y=unmapped(100))]

        assert f() == [101, 102]


class TestOptions:
    @pytest.mark.parametrize(
        ("options", "pattern"),
        [
            ({"retries": -1}, r"`retries=-1` is invalid"),
            ({"retries": 1.5}, r"`retries=1.5` is invalid"),
            ({"crash_retries": -2}, r"`crash_retries=-2` is invalid"),
            ({"timeout_seconds": 0}, r"`timeout_seconds=0` is invalid"),
            ({"timeout_seconds": -3}, r"`timeout_seconds=-3` is invalid"),
            ({"retry_delay_seconds": -1}, r"`retry_delay_seconds=-1` is invalid"),
            ({"resources": {"GPU": -1}}, r"resource 'GPU'=-1 is invalid"),
            ({"resources": ["GPU"]}, r"`resources=\['GPU'\]` is invalid"),
            ({"retry": 3}, r"unknown option\(s\) retry; the options are"),
        ],
    )
    def test_bad_options_are_refused_at_definition(
        self, options: dict[str, object], pattern: str
    ) -> None:
        """Each bad option is refused when the task is defined, naming the value and the fix."""
        with pytest.raises(ConfigError, match=pattern):
            task(**options)(lambda: None)  # type: ignore[call-overload]

    def test_non_callable_is_refused(self) -> None:
        """@task on something that is not callable raises TypeError naming it."""
        with pytest.raises(TypeError, match="@task needs a function, got 42"):
            task(42)  # type: ignore[call-overload]

    def test_with_options_rejects_unknown_keywords(self) -> None:
        """with_options() refuses an unknown keyword and lists the options."""
        with pytest.raises(ConfigError, match="timeout_seconds"):
            add.with_options(timeout=3)

    def test_with_options_keeps_the_rest(self) -> None:
        """with_options() changes only what it is given."""
        t = add.with_options(retries=2, name="adder")
        assert (t.name, t.options.retries, t.fn) == ("adder", 2, add.fn)
        assert add.options.retries == 0

    def test_resources_refused_by_a_runner_without_them(self) -> None:
        """A task asking for resources on a runner that cannot honour them is refused."""
        gpu = add.with_options(resources={"GPU": 1})

        @flow(runner="concurrent")
        def f() -> None:
            gpu.submit(1)

        with pytest.raises(ConfigError, match="cannot honour resource requests"):
            f()


class TestRetries:
    def test_retry_delay_is_observed(self, tmp_path: Path) -> None:
        """Retries wait retry_delay_seconds between attempts, and count attempts."""
        path = str(tmp_path / "n")
        flaky = shared.flaky.with_options(retries=2, retry_delay_seconds=0.2)

        @flow(runner="concurrent")
        def f() -> tuple[int, float]:
            start = time.monotonic()
            value = flaky.submit(path, 2).result(timeout=30)
            return value, time.monotonic() - start

        value, elapsed = f()
        assert value == 3
        assert elapsed >= 0.4  # two delays of 0.2 s happened (a lower bound, not a timing)

    def test_retries_never_apply_to_crashes(self, tmp_path: Path) -> None:
        """`retries` does not re-run a crashed run; `crash_retries` does."""
        path = str(tmp_path / "n")

        @task(retries=3)
        def exits(p: str) -> None:
            shared.bump(p)
            raise SystemExit(1)

        @flow(runner="concurrent")
        def f() -> str:
            return exits.submit(path).wait(30).name  # type: ignore[union-attr]

        assert f() == "Crashed"
        assert shared.count(path) == 1

        path2 = str(tmp_path / "m")

        @flow(runner="concurrent")
        def g() -> str:
            return exits.with_options(crash_retries=2).submit(path2).wait(30).name  # type: ignore[union-attr]

        assert g() == "Crashed"
        assert shared.count(path2) == 3


class TestPickling:
    def test_module_level_task_pickles_by_reference(self) -> None:
        """A module-level task pickles by reference and comes back as the same object."""
        assert pickle.loads(pickle.dumps(shared.add)) is shared.add

    def test_local_task_pickles_by_value(self) -> None:
        """A task whose function is not importable pickles with its function and options."""
        local = Task(len, name="length", retries=1)
        clone = pickle.loads(pickle.dumps(local))
        assert clone.name == "length" and clone.options.retries == 1 and clone([1]) == 1
