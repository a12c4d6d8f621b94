"""Async tasks called inline: a value in sync code, even inside a running loop; awaitable in async code."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import flow, task


@task
async def add_one(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


@task
def sync_caller(x: int) -> int:
    return add_one(x)  # type: ignore[return-value]  # a sync task gets the value


@pytest.mark.parametrize("runner", ["sequential", "concurrent"])
def test_sync_flow_inside_a_running_loop_gets_the_value(runner: str) -> None:
    """A sync flow called where an event loop runs (a notebook cell) gets the task's value."""

    @flow(runner=runner)
    def cell() -> int:
        value = add_one(1)
        assert isinstance(value, int)
        return value + sync_caller.submit(10).result()

    async def notebook() -> int:
        return cell()  # sync code, with this thread's event loop running

    assert asyncio.run(notebook()) == 2 + 11


def test_sync_flow_without_a_loop_gets_the_value() -> None:
    """Without any event loop the inline call returns the value too."""

    @flow(runner="sequential")
    def plain() -> int:
        return add_one(4)  # type: ignore[return-value]

    assert plain() == 5


def test_async_flow_awaits_inline_calls() -> None:
    """In an async flow an inline call of an async task is awaited, as before."""

    @flow(runner="concurrent")
    async def awaiting() -> int:
        first = await add_one(1)
        return first + await add_one.submit(first)

    assert asyncio.run(awaiting()) == 5


def test_an_async_task_calling_an_async_task_inline_awaits_it() -> None:
    """Inside an async task, an inline call is awaitable even when the flow is sync."""

    @task
    async def outer(x: int) -> int:
        return await add_one(x) * 10

    @flow(runner="concurrent")
    def sync_flow() -> int:
        return outer.submit(1).result()

    assert sync_flow() == 20
