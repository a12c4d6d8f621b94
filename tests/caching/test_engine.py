"""The engine's cache: hits are Cached states, only completed runs are written, bad input is warned once."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor import flow, task
from conveyor.exceptions import ConfigError
from conveyor.run_record import RunRecord

RUNNERS = ["sequential", "concurrent", "processes"]


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "store"
    monkeypatch.setenv("CONVEYOR_RESULT_STORE", str(root))
    monkeypatch.delenv("CONVEYOR_CACHE", raising=False)
    return root


def _runs(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


@task(cache=True)
def noted(marker: str, x: int) -> int:
    with open(marker, "a") as f:
        f.write(f"{x}\n")
    return x * 10


@task(cache=True)
def summed(marker: str, a: int, b: int) -> int:
    with open(marker, "a") as f:
        f.write(f"sum{a}+{b}\n")
    return a + b


@task(cache=True, retries=0)
def failing(marker: str) -> int:
    with open(marker, "a") as f:
        f.write("fail\n")
    raise ValueError("no")


def _chain(runner: str) -> Any:
    @flow(runner=runner)
    def chain(marker: str, n: int) -> int:
        xs = noted.map(marker, range(n))  # type: ignore[arg-type]
        return summed.submit(marker, xs[0], xs[-1]).result()

    return chain


@pytest.mark.parametrize("runner", RUNNERS)
def test_second_run_is_all_cached(runner: str, tmp_path: Path) -> None:
    """A rerun executes nothing: every run, the chained one too, ends COMPLETED named Cached."""
    marker = tmp_path / "marker"
    chain = _chain(runner)
    assert chain(str(marker), 3) == 20
    assert len(_runs(marker)) == 4
    run = chain.create_run()
    state = run.run((str(marker), 3), {})
    assert state.result() == 20
    assert len(_runs(marker)) == 4
    record: RunRecord = run.record
    assert record.counts() == {"Cached": 4}


@pytest.mark.parametrize("runner", ["sequential", "concurrent"])
def test_an_fsspec_memory_store_works_end_to_end(
    runner: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a memory:// store (standing in for object storage) the rerun is all Cached."""
    monkeypatch.setenv("CONVEYOR_RESULT_STORE", f"memory://{tmp_path.name}-{runner}")
    marker = tmp_path / "marker"
    chain = _chain(runner)
    assert chain(str(marker), 3) == 20
    run = chain.create_run()
    assert run.run((str(marker), 3), {}).result() == 20
    assert len(_runs(marker)) == 4 and run.record.counts() == {"Cached": 4}


def test_cached_state_carries_the_key(tmp_path: Path) -> None:
    """A hit's state is COMPLETED, named Cached, with the key as its reason."""
    marker = str(tmp_path / "m")

    @flow(runner="sequential")
    def one() -> Any:
        return noted.submit(marker, 1).state

    first = one()
    assert first.name == "Completed"
    second = one()
    assert (second.type.value, second.name, second.result()) == ("COMPLETED", "Cached", 10)
    assert second.reason and len(second.reason) == 40


def test_failed_runs_are_not_cached(tmp_path: Path) -> None:
    """A FAILED run is computed again on the next call."""
    marker = tmp_path / "m"

    @flow(runner="sequential")
    def bad() -> None:
        failing.submit(str(marker)).wait()

    for _ in range(2):
        bad(return_state=True)
    assert _runs(marker) == ["fail", "fail"]


def test_unhashable_argument_runs_uncached_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two runs with a lock argument both execute; the task is warned about once, by name."""
    marker = tmp_path / "m"

    @task(cache=True)
    def with_lock(marker: str, lock: Any) -> int:
        with open(marker, "a") as f:
            f.write("ran\n")
        return 1

    @flow(runner="sequential")
    def body() -> None:
        for _ in range(2):
            with_lock.submit(str(marker), threading.Lock()).wait()

    with caplog.at_level(logging.WARNING, logger="conveyor"):
        body()
    assert _runs(marker) == ["ran", "ran"]
    warnings = [r.getMessage() for r in caplog.records if "with_lock" in r.getMessage()]
    assert len(warnings) == 1 and "not cached" in warnings[0]


@pytest.mark.parametrize("bad", ["raises", "non-str"])
def test_a_bad_cache_key_runs_uncached_with_a_warning(
    bad: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache_key that raises or returns a non-string: the run executes, one warning names the task."""
    marker = tmp_path / "m"

    def key(args: dict[str, Any]) -> Any:
        if bad == "raises":
            raise RuntimeError("broken key")
        return 42

    @task(cache=True, cache_key=key)
    def keyed(marker: str) -> int:
        with open(marker, "a") as f:
            f.write("ran\n")
        return 1

    @flow(runner="sequential")
    def body() -> None:
        keyed.submit(str(marker)).wait()

    with caplog.at_level(logging.WARNING, logger="conveyor"):
        body()
        body()
    assert _runs(marker) == ["ran", "ran"]
    assert any("task 'keyed'" in r.getMessage() for r in caplog.records)


def test_cache_key_picks_what_matters(tmp_path: Path) -> None:
    """A cache_key that ignores an argument makes runs differing only in it share one entry."""
    marker = tmp_path / "m"

    @task(cache=True, cache_key=lambda args: str(args["x"]))
    def by_x(marker: str, x: int, noise: int) -> int:
        with open(marker, "a") as f:
            f.write(f"{x}\n")
        return x

    @flow(runner="sequential")
    def body() -> None:
        by_x.submit(str(marker), 1, 1).wait()
        by_x.submit(str(marker), 1, 2).wait()
        by_x.submit(str(marker), 2, 2).wait()

    body()
    assert _runs(marker) == ["1", "2"]


def test_flow_default_and_env_turn_caching_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task that leaves cache unset is cached under @flow(cache=True) and under CONVEYOR_CACHE=1."""
    marker = tmp_path / "m"

    @task
    def plain(marker: str) -> int:
        with open(marker, "a") as f:
            f.write("ran\n")
        return 1

    @flow(runner="sequential", cache=True)
    def on() -> None:
        plain.submit(str(marker)).wait()

    @flow(runner="sequential")
    def off() -> None:
        plain.submit(str(marker)).wait()

    on()
    on()
    assert _runs(marker) == ["ran"]
    off()
    assert _runs(marker) == ["ran", "ran"]
    monkeypatch.setenv("CONVEYOR_CACHE", "1")
    off()
    assert _runs(marker) == ["ran", "ran"]


def test_an_unwritable_store_is_refused_before_the_flow_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With caching on for the flow, a store under a regular file is one ConfigError, and the body never runs."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CONVEYOR_RESULT_STORE", str(blocker / "store"))
    ran = []

    @flow(runner="sequential", cache=True)
    def body() -> None:
        ran.append(1)

    with pytest.raises(ConfigError, match=r"cannot be written.*result_store"):
        body()
    assert ran == []


def test_a_corrupt_entry_is_recomputed(
    tmp_path: Path, store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged entry is not returned: the run executes again, with a warning."""
    marker = tmp_path / "m"

    @flow(runner="sequential")
    def one() -> int:
        return noted.submit(str(marker), 5).result()

    one()
    [entry] = list(store.glob("??/*.entry"))
    entry.write_bytes(entry.read_bytes()[:-3])
    with caplog.at_level(logging.WARNING, logger="conveyor"):
        assert one() == 50
    assert _runs(marker) == ["5", "5"]
    assert any("unusable" in r.getMessage() for r in caplog.records)
